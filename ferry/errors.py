"""The three ways a Ferry command ends other than success, each with its own exit code.

- `BadInput` (exit 2): the user's input or environment is wrong. Raised by checks that run before
  anything is written, or by a first write that was denied once it is undone (the line says what, if
  anything, stays), so "exit 2" means "nothing that matters was written; fix it and rerun".
- `CannotContinue` (exit 3): a run that has started writing meets a state it must not paper over
  (a stream that expired under it, a table replaced since its checkpoints). Never retried: waiting
  does not change the answer. The message names the remedy; reruns are safe.
- `Stopped` (exit 130): Ctrl-C or SIGTERM; the work in hand was finished and checkpointed first.
- `DifferencesRemain` (exit 1): a verification found differences it did not, or could not, repair
  (also: a cutover gate failed). `NotApproved` (exit 1): a person declined a cutover.

Anything else is a runtime failure (throttling, a lost connection, a bug): it propagates, Prefect
retries it, and the CLI exits 3 if it survives the retries. The CLI turns each of these into one
line on stderr, once, in `ferry.cli.app.main`.
"""


class FerryError(Exception):
    """Base of the errors whose message is written for the user: what is wrong and how to fix it."""


class BadInput(FerryError):
    """Bad input or an unusable environment, found before any write."""


class CannotContinue(FerryError):
    """A started run cannot go on safely; retrying would not help. The message says what to do."""


class Stopped(FerryError):
    """Ctrl-C or SIGTERM: the step stopped after the page or batch in hand, its checkpoint saved."""


class DifferencesRemain(FerryError):
    """A verification ended with differences between source and target."""


class NotApproved(FerryError):
    """A cutover was rejected (in the UI or on the terminal): nothing was switched."""


# What AWS answers when the caller may not do something, or its credentials are not good (moto's
# server with IAM enforced answers DynamoDB with a bare 403)
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation", "ExpiredToken",
                "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId",
                "SignatureDoesNotMatch", "AuthorizationError", "AuthFailure", "InvalidToken"}


def denied_line(error) -> str | None:
    """For an AWS error saying the caller may not act (or its credentials are bad): one line naming
    the operation and the fix; None for any other error."""
    code = error.response.get("Error", {}).get("Code", "")
    if code not in DENIED_CODES:
        return None
    if code in ("AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation", "AuthorizationError"):
        return (f"access denied to {error.operation_name} ({code}): grant it to the credentials of that side "
                "(the README's Permissions list what each command needs), then rerun")
    return (f"the AWS credentials were refused ({code}) on {error.operation_name}: refresh or fix them "
            "(profile, keys, session token or role), then rerun")


def failure_line(error: BaseException) -> str:
    """A runtime failure in one line without customer data: the step it stopped in (set by the task
    that failed; its name names the resource) and, for an AWS error, only its code and operation -
    AWS's own message can quote the request."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError  # not a BotoCoreError; quotes the response body

    if isinstance(error, ClientError):
        retries = error.response.get("ResponseMetadata", {}).get("RetryAttempts")
        what = f"AWS answered {error.response.get('Error', {}).get('Code', 'an error')} to {error.operation_name}"
        what += f" (after {retries} retries)" if retries else ""
    elif isinstance(error, (BotoCoreError, ResponseParserError)):  # some quote the response body
        endpoint = getattr(error, "kwargs", {}).get("endpoint_url")
        what = type(error).__name__ + (f" from {endpoint}" if endpoint else "")
    else:
        what = f"{type(error).__name__}: {error}"
    step = getattr(error, "ferry_step", None)
    return f"{step}: {what}" if step else what
