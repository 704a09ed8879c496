"""Spark-free logic shared by the batch jobs and the serving API (config, schema rules, scoring, encoding)."""
