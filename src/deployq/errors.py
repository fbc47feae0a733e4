"""The deployq error tree.

Every error a user can see derives from :class:`DeployqError`; its message says what failed
and what to do. Library errors are wrapped at the boundary with ``raise ... from exc``::

    DeployqError
    ├── ConfigError              a setting is missing or invalid
    ├── DatabaseError
    │   ├── DatabaseUnavailable  the server cannot be reached
    │   │   └── TransactionAborted  a deadlock or serialisation failure; try again
    │   └── MigrationError       a migration is modified, missing or failed
    ├── NotFound                 an app, job, server, token ... does not exist
    ├── Conflict                 the object exists already, or is in the wrong state
    ├── InvalidInput             a request or argument is malformed
    ├── QueueFull                the app's or the whole queue's limit is reached: retry later
    ├── LostJob                  the worker's lease was taken over (fencing)
    ├── NotifyError              an e-mail or outgoing webhook could not be delivered
    └── PipelineError            a step of a build failed (checkout, build, push, verify)
        ├── CheckoutError
        ├── BuildError
        │   └── PlanError        a repository without a Dockerfile cannot be planned
        ├── RegistryError
        ├── DeployError          a release did not start, answer its health check or switch
        └── EngineUnavailable    the docker daemon of a build server or target does not answer
"""

from __future__ import annotations


class DeployqError(Exception):
    """deployq failed."""

    #: short machine-readable code, used in JSON errors
    code = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(DeployqError):
    """The configuration is invalid."""

    code = "config"


class DatabaseError(DeployqError):
    """The database failed."""

    code = "database"


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached."""

    code = "database_unavailable"


class TransactionAborted(DatabaseUnavailable):
    """A deadlock or serialisation failure aborted the transaction; nothing was written."""

    code = "transaction_aborted"


class MigrationError(DatabaseError):
    """A migration could not be applied."""

    code = "migration"


class NotFound(DeployqError):
    """The object does not exist."""

    code = "not_found"


class Conflict(DeployqError):
    """The object exists already or is in a state that does not allow this."""

    code = "conflict"


class InvalidInput(DeployqError):
    """The input is malformed."""

    code = "invalid_input"


class QueueFull(DeployqError):
    """The queue is full; try again once queued builds have started."""

    code = "queue_full"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 30) -> None:
        super().__init__(message)
        #: when a new attempt has a fair chance (seconds), for HTTP ``Retry-After``
        self.retry_after_s = retry_after_s


class LostJob(DeployqError):
    """This worker no longer owns the job (its lease expired and another worker took it)."""

    code = "lost_job"


class NotifyError(DeployqError):
    """A notification could not be delivered."""

    code = "notify"

    def __init__(
        self,
        message: str | None = None,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        #: retrying cannot help (a refused recipient, no SMTP server configured)
        self.permanent = permanent
        #: the receiver said when to try again (a rate limit); None: the usual backoff
        self.retry_after_s = retry_after_s


class PipelineError(DeployqError):
    """A build step failed."""

    code = "pipeline"
    #: whether another attempt could succeed (a registry outage) or not (a missing Dockerfile)
    retryable = True


class CheckoutError(PipelineError):
    """The git checkout failed."""

    code = "checkout"


class BuildError(PipelineError):
    """The image build failed."""

    code = "build"


class PlanError(BuildError):
    """No build plan: the repository does not say how to build it without a Dockerfile."""

    code = "plan"
    retryable = False


class RegistryError(PipelineError):
    """The registry refused or did not answer."""

    code = "registry"


class DeployError(PipelineError):
    """The deploy step failed (its message says on which target, and what runs now)."""

    code = "deploy"


class EngineUnavailable(PipelineError):
    """The docker engine of the build server does not answer."""

    code = "engine_unavailable"
