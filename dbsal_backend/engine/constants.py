"""Constants shared by the engine and the Label Studio side."""

#: Label value of pixels that carry no label (ignored by the loss and by scoring).
IGNORE_INDEX = 255
