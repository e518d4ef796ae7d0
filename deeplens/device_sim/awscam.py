"""A stand-in for DeepLens's `awscam` (`magiccards deeplens simulate`) that does the real work: frames
are the images of a folder ($AWSCAM_FRAMES, BGR as the camera gives them), and `Model` runs the Model
Optimizer's IR with OpenVINO's CPU plugin; `parseResult` follows the DeepLens developer guide (labels are
class indices; for 'ssd', corners in pixels of the model's input)."""
import os

import cv2
import numpy as np

_frames = sorted(os.path.join(os.environ["AWSCAM_FRAMES"], f) for f in os.listdir(os.environ["AWSCAM_FRAMES"]))
_next = [0]


def getLastFrame():
    if _next[0] >= len(_frames):
        return False, None
    frame = cv2.imread(_frames[_next[0]], cv2.IMREAD_COLOR)
    _next[0] += 1
    return True, frame


class Model:
    def __init__(self, model_path, loading_config):
        import openvino as ov

        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        shape = self._compiled.input(0).get_shape()
        self._height, self._width = int(shape[2]), int(shape[3])
        self._request = self._compiled.create_infer_request()

    def doInference(self, frame):
        assert frame.shape[:2] == (self._height, self._width), "doInference takes the frame at the model's size"
        batch = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)
        out = self._request.infer({0: batch})[self._compiled.output(0)]
        return {self._compiled.output(0).get_any_name(): np.array(out).ravel()}

    def parseResult(self, model_type, result):
        values = next(iter(result.values()))
        if model_type == "classification":
            return {"classification": [{"label": i, "prob": float(p)} for i, p in enumerate(values)]}
        if model_type == "ssd":
            found = []
            for image, label, prob, x0, y0, x1, y1 in values.reshape(-1, 7):
                if image < 0:
                    break
                found.append({"label": int(label), "prob": float(prob), "xmin": float(x0 * self._width),
                              "ymin": float(y0 * self._height), "xmax": float(x1 * self._width),
                              "ymax": float(y1 * self._height)})
            return {"ssd": found}
        raise ValueError("unknown model type " + model_type)
