"""One exception hierarchy for the whole engine.

Every error a user can provoke (a bad model, a bad plan file, a bad feed, an op we do not
support) is an ``EngineError``; messages name the file, node, op, input and shapes involved.
"""


class EngineError(Exception):
    """Root of every error the engine raises on purpose.

    ``cli``: the same message in command-line terms (``--shape image=1x3xHxW`` rather than
    ``input_shapes={'image': ...}``), shown by ``mobile-engine`` instead of the Python one.
    """

    def __init__(self, *args, cli: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli


class ModelFormatError(EngineError):
    """A model file that is not a valid model (truncated, not ONNX, inconsistent graph)."""


class UnsupportedOperatorError(EngineError):
    """An operator, attribute value or dtype the engine has no kernel for."""


class GraphError(EngineError):
    """A graph that breaks an IR invariant (found by ``verify``)."""


class ShapeError(GraphError):
    """Shapes that do not fit an op's rules."""


class PlanFormatError(EngineError):
    """A plan file that is damaged, truncated, of another version, or inconsistent."""


class InputError(EngineError, ValueError):
    """A feed that is missing, unknown, or of the wrong shape or dtype."""


class ResourceLimitError(EngineError):
    """A plan whose memory would exceed the configured limit."""


class PlanVersionWarning(UserWarning):
    """A plan written by a newer engine or in a newer minor format: it loads, but fields this
    engine does not know are ignored (the format's promise: a newer minor stays readable)."""


class KernelBundleWarning(UserWarning):
    """A plan's kernel bundle (``NAME.kernels/``) that does not fit this machine or is damaged:
    it is not used, and the kernels compile here as they would without one."""


class PlanTargetWarning(UserWarning):
    """A plan compiled for another CPU (``compile --target``) than the one it runs on: it runs,
    with the conv tiles and int8 variants refit to this CPU at load (one note per Session)."""
