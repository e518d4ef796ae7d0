"""AWS DeepLens inference function, written by deeplens-magiccards (`magiccards deeplens lambda`).

Runs on the device's Greengrass core (Python 3.7, long-lived): optimises the imported model with
`mo.optimize` (the arguments recorded when the model was packaged, in config.json), loads it with
`awscam.Model`, then for every frame of `awscam.getLastFrame()`: resizes it as the model was validated
(the normalisation is inside the graph), runs it, parses the result (`classification` or `ssd`),
publishes JSON to `$aws/things/<thing>/infer` and draws the result on the frame it writes to the
project stream (`/tmp/results.mjpeg`, a FIFO fed by a writer thread). A model that cannot load is
published as an error, and the function stays up (no crash loop).

A two-stage model (config.json's task "two-stage") loads both of its graphs: the detector's boxes of a
frame, class-agnostic NMS, then each box's square crop of the full frame named by the classifier, each box
answering its best classes with score = box score x class probability; published as a detector's answer.
The crop rule and the NMS are the modules `serve` uses (crops.py, detection_decode.py, shipped beside).
"""
import json
import os
import threading
import time

import awscam  # DeepLens: awscam before cv2
import cv2
import greengrasssdk
import mo
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "config.json")) as _f:
    CONFIG = json.load(_f)
with open(os.path.join(HERE, CONFIG["labels"])) as _f:
    LABELS = [line.rstrip("\n") for line in _f]
if CONFIG["task"] == "two-stage":
    import crops
    import detection_decode
CLIENT = greengrasssdk.client("iot-data")
TOPIC = "$aws/things/{}/infer".format(os.environ.get("AWS_IOT_THING_NAME", "deeplens"))
COLOURS = [(75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245), (180, 30, 145)]


def publish(message):
    CLIENT.publish(topic=TOPIC, payload=json.dumps(message))


class LocalDisplay(threading.Thread):
    """Writes the newest annotated frame, as JPEG, to the FIFO the device's project stream reads."""

    def __init__(self, path, resolution=(858, 480)):
        super(LocalDisplay, self).__init__(daemon=True)
        self.path, self.resolution = path, resolution
        self.frame = cv2.imencode(".jpg", 255 * np.ones([480, 858, 3], np.uint8))[1]
        self.stop_request = threading.Event()

    def run(self):
        if not os.path.exists(self.path):
            os.mkfifo(self.path)
        with open(self.path, "wb") as fifo:  # blocks until the stream (a reader) opens it
            while not self.stop_request.is_set():
                try:
                    fifo.write(self.frame.tobytes())
                    fifo.flush()
                except IOError:
                    time.sleep(0.05)

    def set_frame_data(self, frame):
        ok, jpeg = cv2.imencode(".jpg", cv2.resize(frame, self.resolution))
        if ok:
            self.frame = jpeg

    def join(self, timeout=None):
        self.stop_request.set()


def prepare(frame, stage):
    """The frame resized as validation resized the images of `stage` (a network's config): a centre crop of
    the shorter side for a classifier, the whole frame for a detector (cubic to enlarge, area to shrink)."""
    width, height = stage["input_width"], stage["input_height"]
    h, w = frame.shape[:2]
    if stage["task"] == "classification":
        side = min(width, height)
        if h < w:
            new_h, new_w = side, int(w * side / h)
        else:
            new_h, new_w = int(h * side / w), side
        frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        x0, y0 = int((new_w - width) / 2), int((new_h - height) / 2)
        return frame[y0:y0 + height, x0:x0 + width]
    if height > h and width > w:
        interpolation = cv2.INTER_CUBIC
    elif height < h and width < w:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


def results(parsed, frame):
    """The published result, in frame pixels, drawn on `frame`."""
    h, w = frame.shape[:2]
    if CONFIG["task"] == "classification":
        top = sorted(parsed, key=lambda o: -o["prob"])[:CONFIG["top_k"]]
        found = [{"label": LABELS[int(o["label"])], "prob": float(o["prob"])} for o in top]
        for i, o in enumerate(found):
            cv2.putText(frame, "{}: {:.2f}".format(o["label"], o["prob"]), (10, 40 + 40 * i),
                        cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 0), 3)
        return {"classification": found}
    boxes_of = CONFIG["stages"]["detector"] if CONFIG["task"] == "two-stage" else CONFIG  # rows in its input pixels
    sx, sy = float(w) / boxes_of["input_width"], float(h) / boxes_of["input_height"]
    found = []
    for o in parsed:
        if o["prob"] < CONFIG["score_threshold"] or not 0 <= int(o["label"]) < len(LABELS):
            continue
        box = [int(round(o["xmin"] * sx)), int(round(o["ymin"] * sy)), int(round(o["xmax"] * sx)),
               int(round(o["ymax"] * sy))]
        found.append({"label": LABELS[int(o["label"])], "prob": float(o["prob"]), "xmin": box[0], "ymin": box[1],
                      "xmax": box[2], "ymax": box[3]})
        colour = COLOURS[int(o["label"]) % len(COLOURS)]
        cv2.rectangle(frame, (box[0], box[1]), (box[2], box[3]), colour, 3)
        cv2.putText(frame, "{} {:.2f}".format(found[-1]["label"], o["prob"]), (box[0], max(20, box[1] - 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.9, colour, 2)
    found.sort(key=lambda o: -o["prob"])
    return {"ssd": found}


def infer(model, stage, frame):
    """The parsed answer of one network for `frame`."""
    return model.parseResult(stage["parse_result"], model.doInference(prepare(frame, stage)))[stage["parse_result"]]


def two_stage(models, frame):
    """A two-stage model's detections of `frame` as `ssd` rows in the detector's input pixels (as
    parseResult gives them) over the classifier's classes."""
    detector, classifier = CONFIG["stages"]["detector"], CONFIG["stages"]["classifier"]
    joins = CONFIG["two_stage"]
    width, height = float(detector["input_width"]), float(detector["input_height"])
    parsed = infer(models["detector"], detector, frame)
    scores = np.array([o["prob"] for o in parsed], np.float32)
    boxes = np.clip(np.array([[o["xmin"] / width, o["ymin"] / height, o["xmax"] / width, o["ymax"] / height]
                              for o in parsed], np.float32).reshape(-1, 4), 0.0, 1.0)
    usable = np.isfinite(scores) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    rules = detection_decode.DecodeRules(overlap_thresh=joins["nms_iou"], valid_thresh=joins["box_threshold"],
                                         force_suppress=True, topk=400, keep=joins["max_boxes"])
    rows = detection_decode.nms_one(np.zeros(int(usable.sum()), np.float32), scores[usable], boxes[usable], rules)
    found = []
    for class_id, box_score, x0, y0, x1, y1 in rows:
        if class_id < 0 or box_score < CONFIG["score_threshold"]:  # best first: nothing after can be kept
            break
        crop = crops.crop_normalised(frame, (x0, y0, x1, y1))
        if crop is None:
            continue
        named = infer(models["classifier"], classifier, crop)
        probabilities = np.zeros(len(LABELS), np.float32)
        for o in named:
            probabilities[int(o["label"])] = o["prob"]
        for label in np.argsort(-probabilities, kind="stable")[:joins["classes_per_box"]]:
            found.append({"label": int(label), "prob": float(box_score * probabilities[label]), "xmin": x0 * width,
                          "ymin": y0 * height, "xmax": x1 * width, "ymax": y1 * height})
    return found


def load_model(stage):
    error, model_path = mo.optimize(stage["name"], stage["input_width"], stage["input_height"],
                                    platform=stage["platform"], aux_inputs=stage["aux_inputs"])
    if error or not model_path:
        raise RuntimeError("mo.optimize could not convert {} (error {})".format(stage["name"], error))
    return awscam.Model(model_path, {"GPU": 1})


def infinite_infer_run():
    display = LocalDisplay(CONFIG["results_fifo"])
    display.start()
    stages = CONFIG.get("stages") or {"model": CONFIG}
    try:
        models = dict((key, load_model(stage)) for key, stage in stages.items())
    except Exception as e:  # the device keeps the function; the topic says why nothing comes
        publish({"error": "the model cannot be loaded: {}".format(e)})
        while CONFIG.get("max_frames") is None:
            time.sleep(60)
        return
    frames = 0
    while CONFIG.get("max_frames") is None or frames < CONFIG["max_frames"]:
        ok, frame = awscam.getLastFrame()
        if not ok:
            publish({"error": "no frame from the camera"})
            time.sleep(1)
            frames += 1
            continue
        if CONFIG["task"] == "two-stage":
            parsed = two_stage(models, frame)
        else:
            parsed = infer(models["model"], CONFIG, frame)
        message = results(parsed, frame)
        message.update(frame=frames, time=time.time())
        display.set_frame_data(frame)
        publish(message)
        frames += 1
    display.join()


def function_handler(event, context):
    """Long-lived function: the work happens in the loop started at import."""
    return


infinite_infer_run()
