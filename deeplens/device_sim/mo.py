"""A stand-in for DeepLens's `mo` (`magiccards deeplens simulate`) that calls the real Intel Model
Optimizer (its MXNet front end, in the venv magiccards.deeplens.model_optimizer finds), as the device's
`mo.optimize` does. The imported model lies in $DEEPLENS_ARTIFACTS (the device's /opt/awscam/artifacts)
unless aux_inputs give --models-dir."""
import os
import subprocess


def optimize(model_name, input_width, input_height, platform="MXNet", aux_inputs=None):
    from magiccards.deeplens.model_optimizer import find_mo

    aux = dict(aux_inputs or {})
    models = aux.get("--models-dir", os.environ["DEEPLENS_ARTIFACTS"])
    out = aux.get("--output-dir", models)
    epoch = int(aux.get("--epoch", 0))
    precision = aux.get("--precision", "FP16")
    name = "{}-{}".format(model_name, precision.lower())
    done = subprocess.run([str(find_mo()), "--framework", platform.lower(), "--input_model",
                           os.path.join(models, "{}-{:04d}.params".format(model_name, epoch)),
                           "--input_shape", "[1,3,{},{}]".format(input_height, input_width), "--output_dir", out,
                           "--model_name", name, "--compress_to_fp16={}".format(precision == "FP16")],
                          capture_output=True, text=True)
    xml = os.path.join(out, name + ".xml")
    return (0, xml) if done.returncode == 0 and os.path.isfile(xml) else (done.returncode or 1, "")
