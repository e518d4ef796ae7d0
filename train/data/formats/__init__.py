"""Annotation formats read by `magiccards pack` (Pascal VOC, COCO, SageMaker JSON, CSV)."""
