"""A real RTSP server for the tests: GStreamer's gst-rtsp-server serving an H.264 mp4 file, looping.

Run with Debian's /usr/bin/python3 (it has python3-gi): ``python3 gst_rtsp_server.py PORT FILE``.
It serves rtsp://127.0.0.1:PORT/cam from one shared pipeline (several clients see the same
stream) and loops the file with segment seeks, so timestamps keep running across loops. Imports
of gi happen in main(): tests/conftest.py loads every module here as a pytest plugin.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    port, path = argv[1], argv[2]
    seek_flags = Gst.SeekFlags.SEGMENT

    class LoopingMedia(GstRtspServer.RTSPMedia):
        """Turns the end of the file into a seek back to its start (no EOS, running time continues)."""

        def do_handle_message(self, message: Gst.Message) -> bool:
            if message.type == Gst.MessageType.SEGMENT_DONE:
                self.get_element().seek_simple(Gst.Format.TIME, seek_flags, 0)
                return True
            return GstRtspServer.RTSPMedia.do_handle_message(self, message)

    def on_prepared(media: GstRtspServer.RTSPMedia) -> None:
        # A flushing segment seek once prepared: from now on the pipeline posts SEGMENT_DONE at the end.
        pipeline = media.get_element()
        pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | seek_flags, 0)
        # Wait for the pipeline to preroll again: a client's PLAY racing the flush would find streams
        # without a segment and trip gst_rtsp_media_get_rates' assertion.
        pipeline.get_state(5 * Gst.SECOND)

    def on_media_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        media.connect("prepared", on_prepared)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )')
    factory.set_shared(True)
    factory.set_media_gtype(LoopingMedia)
    factory.connect("media-configure", on_media_configure)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"cannot listen on port {port}\n")
        return 2
    sys.stderr.write(f"rtsp server ready on rtsp://127.0.0.1:{port}/cam\n")
    sys.stderr.flush()
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
