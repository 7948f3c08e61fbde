"""Tests of ingest/: readers, row schemas, the ingest service and the feed puller."""
