"""Stream to lake: drains the API's Redis Stream into the Delta interactions table (``stream-ingest``)."""
