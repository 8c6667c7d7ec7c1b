"""Every bad input in docs/errors.md gives the documented xpnet error, built-in base class and message."""
import pytest

from xpnet import errors

from error_cases import CASES, DOC, documented, run, skip_reason


@pytest.fixture(scope="module")
def doc_rows():
    return documented(DOC)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_the_documented_error(case, doc_rows, tmp_path):
    reason = skip_reason(case)
    if reason:
        pytest.skip(reason)
    got, message = run(case, tmp_path)
    assert isinstance(got, case.error), f"{case.code} gave {got!r}, expected {case.error.__name__}"
    assert isinstance(got, case.builtin), f"{type(got).__name__} is not a {case.builtin.__name__}"
    assert case.fragment in message
    assert case.name in doc_rows, f"{case.name!r} is missing from {DOC.name}: run tests/error_cases.py"
    error, builtin, doc_message = doc_rows[case.name]
    assert (error, builtin) == (case.error.__name__, case.builtin.__name__)
    if case.exact:
        assert message == doc_message, f"{DOC.name} is out of date: run tests/error_cases.py"


def test_the_page_lists_exactly_the_cases(doc_rows):
    assert list(doc_rows) == [c.name for c in CASES]


def test_every_error_class_is_raised_by_some_bad_input():
    raised = {c.error for c in CASES}
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.XpnetError) and cls is not errors.XpnetError:
            assert cls in raised, cls.__name__


def test_errors_subclass_the_matching_builtins():
    assert issubclass(errors.ShapeError, ValueError) and issubclass(errors.DataError, ValueError)
    assert issubclass(errors.DataTypeError, TypeError) and issubclass(errors.DeviceError, TypeError)
    assert issubclass(errors.BackendUnavailableError, ImportError)
    assert issubclass(errors.DivergenceError, ArithmeticError)
    assert issubclass(errors.CheckpointError, ValueError) and issubclass(errors.ConfigError, ValueError)


def test_unknown_names_suggest_nothing_when_nothing_is_close():
    with pytest.raises(errors.ConfigError) as info:
        errors.lookup("loss", "zzzz", {"mse": 1})
    assert "expected one of 'mse'" in str(info.value) and "Did you mean" not in str(info.value)
