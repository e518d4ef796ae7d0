"""OpenVINO's usage telemetry: off for every OpenVINO call this project makes on a user's behalf.

Importing OpenVINO (its runtime too), its converter (`convert_model`), the Model Optimizer and NNCF start a
usage-telemetry sender and keep a client id under ~/intel/ unless the user opted out; with no consent file
they take consent. So every import of OpenVINO in this project goes through `openvino()`, which opts out
first. The toolkit's documented
opt-out (`opt_in_out --opt_out`) writes ~/intel/openvino_telemetry holding "0": `opt_out` writes the same
file the same way (through the package's own OptInChecker), without the opt-out event that script sends.
A user who opted in themselves (the file holds "1") keeps that choice. The image is built opted out.
"""
from __future__ import annotations

import os


def opt_out() -> None:
    """Write the opt-out consent file unless the user already decided; quiet when it cannot be written."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no OpenVINO tools installed: nothing would send
        return
    checker = OptInChecker()
    if checker.consent_file_base_dir() is None or checker.consent_file_subdirectory() is None:
        return
    try:
        with open(checker.consent_file()) as f:
            if f.read().strip() == "1":
                return
    except OSError:
        pass
    checker.update_result(ConsentCheckResult.DECLINED)


def openvino():
    """The `openvino` module, imported after `opt_out`."""
    opt_out()
    import openvino as ov

    return ov


def opted_out() -> bool:
    """Whether OpenVINO's tools would send nothing (what `opt_out` leaves)."""
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    return OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED


if __name__ == "__main__":  # the image's build step: python -m magiccards.telemetry
    opt_out()
    print(f"OpenVINO telemetry {'off' if opted_out() else 'ON'} ({os.path.expanduser('~/intel')})")
