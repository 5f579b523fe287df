"""A chunk cutter that records what it cuts: tests of re-cuts count the bytes cut again."""


class CountingCutter:
    """Wraps a pyfastcdc cutter; each chunk it cuts (``cut_stream`` or ``cut_buf``) adds its length to ``cut``."""

    def __init__(self, cutter, cut):
        self.cutter = cutter
        self.cut = cut

    def cut_stream(self, stream):
        return self._counted(self.cutter.cut_stream(stream))

    def cut_buf(self, data):
        return self._counted(self.cutter.cut_buf(data))

    def _counted(self, chunks):
        for chunk in chunks:
            self.cut.append(chunk.length)
            yield chunk
