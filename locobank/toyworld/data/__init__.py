"""The toy data set: procedural faces with exact part masks and attributes (:mod:`.faces`), their
captions and edit captions (:mod:`.captions`), and pixel probes that read an attribute back from
an image (:mod:`.probes`). Everything here is a pure function of a face's seed."""
