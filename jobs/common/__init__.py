"""Spark-only helpers shared by the jobs: session builder, lake IO and table schemas, job runner."""
