"""Ray actors of the pipeline: segmenters, per-camera decoders and pushers, the event sink, the controller."""
