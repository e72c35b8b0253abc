"""Inference engines: YOLOv8-seg model loading, pre/post-processing and backends behind one protocol."""
