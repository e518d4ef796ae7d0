"""One errors module: every user error has an exit code; the job turns them into the toolkit's ClientError."""
import inspect

from magiccards import errors


def test_every_user_error_has_an_exit_code_and_a_docstring():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.UserError)]
    assert len(classes) >= 9
    for cls in classes:
        assert isinstance(cls.exit_code, int) and cls.exit_code > 0 and cls.__doc__


def test_the_job_reports_a_user_error_as_a_client_error(monkeypatch):
    from magiccards.train import entry
    from sagemaker_training.errors import ClientError

    class Environment:  # the toolkit's Environment reads /opt/ml; here the run fails before it matters
        def __init__(self):
            raise errors.DataError("the job has no train channel")

    import sagemaker_training.environment
    monkeypatch.setattr(sagemaker_training.environment, "Environment", Environment)
    try:
        entry.main()
    except ClientError as e:
        assert str(e) == "the job has no train channel" and e.__cause__ is None
    else:
        raise AssertionError("no ClientError")
