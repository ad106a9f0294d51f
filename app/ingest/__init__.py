"""Bring a collection onto a map: sources -> batches -> encode -> store.

- sources.py: what to add. A folder tree (`--images DIR`) or a table (`--table FILE`: CSV, Parquet, JSON Lines)
  becomes a list of records (an image file, a prompt or a precomputed vector, plus metadata columns) and the
  files or rows that were skipped, with the reason.
- stages.py: the stage functions both pipelines run: read and decode a record's image (CPU), prepare and
  encode a batch (the model), turn results into store items.
- local.py: the in-process pipeline (threads read ahead while the model encodes), resumable by content hash.
- ray_pipeline.py: the same stages on Ray Data (`--ray`), each batch imported as it comes back.
"""
