"""The plain data a run report is drawn from: one `RunRecord` per execute().

Nothing here knows about hook events. The observer in `hook.py` translates events
into calls on a `RunRecord`; the renderers (`html.py`, `chrome_trace.py`) read it.
Keeping the record plain means the renderers and their tests never depend on the
shape of `HookContext`, and a record can be built by hand for a test or a benchmark.

Times are wall-clock seconds (`time.time()`), as the workers measured them, so chunks
from different processes land on one axis. `elapsed` figures are seconds since the
run began.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# Chunks kept one by one for the timeline, the curves and the Chrome trace. Past this
# a run is counted (tallies, sizes, errors) but its further chunks are not kept, so a
# runaway run with millions of one-item tasks cannot exhaust the caller's memory.
DEFAULT_MAX_CHUNKS = 1_000_000


@dataclass(slots=True)
class Identity:
    """What ran, where, with which amorsize."""

    function: str
    execution_id: str = ""
    amorsize_version: str = ""
    host: str = ""
    start_method: str = ""
    cores: Optional[int] = None  # usable cores (affinity and cgroup quota)
    physical_cores: Optional[int] = None
    python: str = ""
    pid: Optional[int] = None  # the calling process


@dataclass(slots=True)
class PlanRecord:
    """One decision: the first plan, or a revision made while the job ran."""

    elapsed: float  # seconds since the run began when this plan was made
    executor_type: str
    n_jobs: int
    chunksize: int
    estimated_speedup: Optional[float] = None
    reason: str = ""  # the optimizer's reason for the plan
    explanation: str = ""  # OptimizationResult.explain()
    # seconds since the run began at which this plan predicts the last item done
    predicted_end: Optional[float] = None
    change_reason: Optional[str] = None  # why the plan was revised (None: first plan)


@dataclass(slots=True)
class ChunkRecord:
    """One task as its worker measured it. `worker_id` None: the calling process."""

    chunk_id: int
    worker_id: Optional[int]
    pid: Optional[int]
    size: int
    started_at: float
    ended_at: float
    start_index: Optional[int] = None
    sampled: bool = False
    error: Optional[int] = None  # index into RunRecord.errors when the task failed

    @property
    def duration(self) -> float:
        """Worker-measured seconds (never negative)."""
        return max(0.0, self.ended_at - self.started_at)

    @property
    def failed(self) -> bool:
        """Whether the function raised in this task."""
        return self.error is not None


@dataclass(slots=True)
class WorkerRecord:
    """What one lane did: a pool worker, or the calling process (`worker_id` None)."""

    worker_id: Optional[int]
    pid: Optional[int] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    chunks: int = 0
    items: int = 0
    busy_seconds: float = 0.0


@dataclass(slots=True)
class ErrorRecord:
    """A failure: the function raised, a worker died, or the run was cancelled."""

    error_type: str
    message: str
    traceback: Optional[str] = None
    timestamp: Optional[float] = None
    status: Optional[str] = None
    chunk_id: Optional[int] = None
    worker_id: Optional[int] = None


@dataclass
class RunRecord:
    """Everything a report shows about one run, filled in while the run goes on."""

    identity: Identity
    run_started_at: float
    total_items: Optional[int] = None
    plans: list[PlanRecord] = field(default_factory=list)
    chunks: list[ChunkRecord] = field(default_factory=list)
    workers: dict[Optional[int], WorkerRecord] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    status: str = "running"
    ended_at: Optional[float] = None
    wall_seconds: Optional[float] = None  # execute()'s own clock, when known
    items_completed: int = 0
    results_count: Optional[int] = None
    first_estimated_speedup: Optional[float] = None
    final_estimated_speedup: Optional[float] = None
    actual_speedup: Optional[float] = None
    parallel_efficiency: Optional[float] = None
    busy_seconds: Optional[float] = None  # as the run reported it; else summed here
    chunks_seen: int = 0
    max_chunks: int = DEFAULT_MAX_CHUNKS

    # ------------------------------------------------------------------ building

    def worker(self, worker_id: Optional[int], pid: Optional[int] = None) -> WorkerRecord:
        """The lane of `worker_id` (None: the calling process), created on first use."""
        record = self.workers.get(worker_id)
        if record is None:
            record = WorkerRecord(worker_id=worker_id, pid=pid)
            self.workers[worker_id] = record
        elif record.pid is None and pid is not None:
            record.pid = pid
        return record

    def worker_started(
        self, worker_id: Optional[int], pid: Optional[int], started_at: Optional[float]
    ) -> None:
        """A worker was heard from for the first time."""
        record = self.worker(worker_id, pid)
        if started_at is not None:
            record.started_at = started_at

    def worker_ended(self, worker_id: Optional[int], ended_at: Optional[float]) -> None:
        """A worker's part of the run is over."""
        self.worker(worker_id).ended_at = ended_at

    def add_chunk(self, chunk: ChunkRecord) -> None:
        """A task finished (or failed): tally it, and keep it while under `max_chunks`."""
        self.chunks_seen += 1
        lane = self.worker(chunk.worker_id, chunk.pid)
        lane.chunks += 1
        lane.busy_seconds += chunk.duration
        if not chunk.failed:
            lane.items += chunk.size
            self.items_completed += chunk.size
        if len(self.chunks) < self.max_chunks:
            self.chunks.append(chunk)

    def add_error(self, error: ErrorRecord) -> int:
        """Record a failure; return its index (for `ChunkRecord.error`)."""
        self.errors.append(error)
        return len(self.errors) - 1

    def add_plan(self, plan: PlanRecord) -> None:
        """Record the first plan or a revision."""
        if not self.plans and self.first_estimated_speedup is None:
            self.first_estimated_speedup = plan.estimated_speedup
        self.plans.append(plan)
        self.final_estimated_speedup = plan.estimated_speedup

    # ------------------------------------------------------------------ reading

    @property
    def chunks_dropped(self) -> int:
        """Chunks counted but not kept (past `max_chunks`)."""
        return self.chunks_seen - len(self.chunks)

    @property
    def first_plan(self) -> Optional[PlanRecord]:
        """The decision the run started with."""
        return self.plans[0] if self.plans else None

    @property
    def final_plan(self) -> Optional[PlanRecord]:
        """The plan in force at the end."""
        return self.plans[-1] if self.plans else None

    @property
    def wall(self) -> float:
        """Seconds from the start of execute() to its end (or to the last chunk)."""
        if self.wall_seconds is not None:
            return max(0.0, self.wall_seconds)
        end = self.ended_at
        if end is None:
            end = max((c.ended_at for c in self.chunks), default=self.run_started_at)
        return max(0.0, end - self.run_started_at)

    @property
    def total_busy_seconds(self) -> float:
        """Worker-measured compute time of every task, failed ones included."""
        if self.busy_seconds is not None:
            return self.busy_seconds
        return sum(w.busy_seconds for w in self.workers.values())

    def lanes(self) -> list[WorkerRecord]:
        """The timeline's lanes: the calling process first, then workers by id."""
        caller = self.workers.get(None) or WorkerRecord(worker_id=None, pid=self.identity.pid)
        pool = sorted(
            (w for key, w in self.workers.items() if key is not None),
            key=lambda w: w.worker_id if w.worker_id is not None else -1,
        )
        return [caller, *pool]
