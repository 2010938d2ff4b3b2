"""The platform-neutral run status model shared by every Batch platform."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """What a Polysync run is doing, whatever platform runs it."""

    STARTING = "Starting"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunState:
    """One observation of a run: the decoded status plus what the platform said."""

    run_id: str
    status: RunStatus
    message: str
    exit_code: int | None = None
    native_status: str | None = None
    """The platform's own status word (AWS job status, Azure task state), for the log timeline."""
    progress: str = ""
    """How far a run made of many parts has come (an AWS array job's children), e.g.
    "37/100 succeeded, 2 failed, 10 running"; "" when the platform tells nothing of the kind."""

    def to_event(self) -> dict[str, Any]:
        """The trigger event payload (contract: status, run_id, message, exit_code; also native_status, progress)."""
        return {
            "status": self.status.value,
            "run_id": self.run_id,
            "message": self.message,
            "exit_code": self.exit_code,
            "native_status": self.native_status,
            "progress": self.progress,
        }
