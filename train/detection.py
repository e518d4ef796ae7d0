"""SSD detection recipe, after GluonCV's train_ssd.py: its transforms, multibox loss and VOC07 mAP."""
from __future__ import annotations

import warnings

import mxnet as mx
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
from gluoncv.loss import SSDMultiBoxLoss
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
from mxnet import autograd, gluon

from .detection_transform import SeededItems, SSDTrainTransform
from .hyperparameters import Hyperparameters
from .readers import ChannelData
from .recipe import Recipe, loader_threads
from .reporting import say

NMS_TOPK = 400


class DetectionRecipe(Recipe):
    score_key = "validation_map"
    train_score_key = "train_score"
    seeded_items = True

    def __init__(self, net, trainer, train: ChannelData, val: ChannelData | None, hp: Hyperparameters,
                 classes: list[str], ctx, num_workers: int = 0, part: int = 0, parts: int = 1):
        super().__init__(net, trainer, hp, classes, ctx, train, val, part, parts)
        _, h, w = hp.image_shape
        self.size = (w, h)
        if hp.precision_dtype == "float16":
            say("precision_dtype=float16 applies to classification only: the SSD trains in float32")
        with autograd.train_mode():
            _, _, anchors = net(mx.nd.zeros((1, 3, h, w), ctx=ctx[0]))
        transform = SSDTrainTransform(w, h, anchors, iou_thresh=hp.overlap_threshold,
                                      augmentation=hp.augmentation_type)
        threads = loader_threads("detection")
        self.train_loader = gluon.data.DataLoader(
            SeededItems(train.dataset, transform, hp.seed), batch_sampler=self.batch_sampler,
            batchify_fn=Tuple(Stack(), Stack(), Stack()), num_workers=num_workers, thread_pool=threads)
        if val is not None:
            self.val_loader = gluon.data.DataLoader(
                val.dataset.transform(SSDDefaultValTransform(w, h)), hp.mini_batch_size, shuffle=False,
                batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), last_batch="keep", num_workers=num_workers,
                thread_pool=threads)
        self.loss = SSDMultiBoxLoss()
        self.ce, self.l1 = mx.metric.Loss("CrossEntropy"), mx.metric.Loss("SmoothL1")
        self.metrics = [self.ce, self.l1]
        self.per_class_ap: list[float] = []

    def batches(self, epoch: int, start: int):
        # SSD traces a different graph in training and inference mode; re-hybridizing drops the cached one
        self.net.hybridize(static_alloc=True, static_shape=True)
        yield from super().batches(epoch, start)

    def step(self, batch) -> int:
        n = batch[0].shape[0]
        data, cls_targets, box_targets = (gluon.utils.split_and_load(x, self.ctx, even_split=False) for x in batch)
        data = [x.astype("float32", copy=False) for x in data]  # float16 from the loader (detection_transform)
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in data:
                cls_pred, box_pred, _ = self.net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            total, cls_loss, box_loss = self.loss(cls_preds, box_preds, cls_targets, box_targets)
            autograd.backward(total)
        # the multibox loss is normalised by the number of positives; gradients are summed over `parts` workers
        self.trainer.step(self.parts)
        self.ce.update(0, [l * n for l in cls_loss])
        self.l1.update(0, [l * n for l in box_loss])
        return n

    def train_metrics(self) -> dict:
        ce, l1 = float(self.ce.get()[1]), float(self.l1.get()[1])
        return {"train_cross_entropy": ce, "train_smooth_l1": l1, "train_score": -(ce + l1)}

    def evaluate(self) -> dict:
        if not self.begin_validation():
            return {}
        self.net.set_nms(nms_thresh=self.hp.nms_threshold, nms_topk=NMS_TOPK)  # also drops the cached graph
        metric = VOC07MApMetric(iou_thresh=0.5, class_names=self.classes)
        for batch in self.val_loader:
            data = gluon.utils.split_and_load(batch[0], self.ctx, even_split=False)
            label = gluon.utils.split_and_load(batch[1], self.ctx, even_split=False)
            det_boxes, det_ids, det_scores, gt_boxes, gt_ids = [], [], [], [], []
            for x, y in zip(data, label):
                ids, scores, boxes = self.net(x)
                det_ids.append(ids)
                det_scores.append(scores)
                det_boxes.append(boxes.clip(0, batch[0].shape[2]))
                gt_ids.append(y.slice_axis(axis=-1, begin=4, end=5))
                gt_boxes.append(y.slice_axis(axis=-1, begin=0, end=4))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metric.update(det_boxes, det_ids, det_scores, gt_boxes, gt_ids)
        names, values = metric.get()
        self.per_class_ap = [float(v) for v in values[:-1]]
        mean = float(values[-1])
        return {"validation_map": mean if mean == mean else 0.0}
