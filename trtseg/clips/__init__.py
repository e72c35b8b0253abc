"""Incident clips: the source's own compressed video, buffered per camera and remuxed into MP4 on demand.

``packet_ring`` (the rolling buffer the decoder taps), ``recorder`` (one camera's clips),
``camera`` (both, sized from the camera's configuration), ``requests`` (which incident records start
and stop a clip), ``layout`` (files and the incident index), ``retention`` (age and disk cap).
"""
