"""Exceptions deepzip raises on bad input. Each message is one sentence that says what is wrong."""


class DeepzipError(Exception):
    """Base class of every error deepzip raises on purpose."""


class DzipFormatError(DeepzipError, ValueError):
    """A .dzip file (or a stream inside it) is corrupt, truncated or not a .dzip file."""


class DataError(DeepzipError, ValueError):
    """A data set file is missing, truncated or malformed."""


class ConfigError(DeepzipError, ValueError):
    """A configuration or recipe asks for something impossible."""


class ModelMismatchError(DeepzipError, ValueError):
    """A .dzip's tensors do not fit the module it is being loaded into."""


class TrainingError(DeepzipError, RuntimeError):
    """Training went wrong in a way retrying the same settings will not fix (a non-finite loss)."""


class RunStateError(DeepzipError, ValueError):
    """A run directory holds checkpoints that cannot be resumed or must not be overwritten."""


class NumericsError(DeepzipError, ValueError):
    """A tensor holds NaN or infinite values, which deepzip refuses to prune, share or store."""


class DeepzipWarning(UserWarning):
    """Something deepzip did that a user may not expect (a weight matrix left uncompressed, say)."""


class InvalidSetting(ConfigError):
    """A setting out of range: `key` is where (its name or path, "bits.fc1"), `rule` what it must
    be, `value` what was given. The recipe reader adds the stage's path to `key`, so one rule,
    written once beside the API that needs it, speaks for the recipe too."""

    def __init__(self, key: str, rule: str, value: object) -> None:
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{key} must be {rule}, not {value!r}.")
