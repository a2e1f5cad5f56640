"""The chat's model, from the person's choice to a crash: what answers, and whether it can.

:class:`ModelLifecycle` is the part of the chat that knows nothing of conversations. It
picks which model answers for a choice (a base answers with its active taught version),
starts the worker process off the GUI thread (a second or more; restarted after a
crash), asks the worker to load, and follows the load's events to one
:class:`ModelState` the model bar shows. A fine-tuned model is served as its base plus a
live adapter when it can be (:func:`app.models.live.plan_load`): switching between them
is then an adapter switch, and an adapter the base refuses falls back to the merged
model.

What goes wrong here becomes a :class:`~ui.chat.problems.Problem` with a Reload button,
sent out through :attr:`ModelLifecycle.problem`; the
:class:`~ui.chat.chat_view_model.ChatViewModel` shows it beside the reply flow's own
problems, and stops a reply in flight before another model loads.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from PySide6.QtCore import QObject, Signal

from app.inference import protocol as p
from app.inference.client import InferenceClient, WorkerError
from app.models.library import LibraryError, UnknownModel
from app.models.live import plan_load
from app.models.versions import ActiveVersions, chat_model
from app.workspace import Workspace
from ui.background import Background
from ui.chat.problems import Problem, ProblemAction

log = logging.getLogger("hearth.chat")


class ModelState(StrEnum):
    """Where the chat's model stands, as the model bar shows it."""

    STOPPED = "stopped"
    STARTING = "starting"
    """The worker process is starting."""
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    """The worker did not start, or the model did not load."""
    CRASHED = "crashed"
    """The worker died while the model was loaded."""


class ModelLifecycle(QObject):
    changed = Signal()                  # state, progress, the model or its notice changed
    versions_changed = Signal(str, str)  # base, its active version (chosen in chat)
    problem = Signal(object)            # a Problem to show; None: a fresh start clears it

    def __init__(self, workspace: Workspace, client: InferenceClient,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.client = client
        self.state = ModelState.STOPPED
        self.progress = 0.0
        self.loaded: p.Loaded | None = None
        # The adapter applied to the loaded base ("" or None: none), and one asked for
        # and not yet applied; see app.models.live.
        self.adapter: str | None = None
        self._pending_adapter: str | None = None
        self._live_ok = True
        # A line about how the model runs that the person should see once (the kernel
        # fallback); plain text, shown in the model bar.
        self.notice = ""
        self._starter = Background(self)  # starts the worker process off the GUI thread
        self._closing = False
        default = workspace.library.default()
        self.model_name = self.model_for(default.name) if default else None
        """The chosen model: loaded, loading or to load."""

    # ------------------------------------------------------------- choosing

    def model_for(self, name: str) -> str:
        """The model that answers for ``name``'s base now: its active taught version, or
        the base itself (as ``hearth chat`` picks). The default model may be a version
        the person rolled back from: its base decides, not the version."""
        versions = ActiveVersions(self.workspace.home)
        try:
            base = self.workspace.library.get(versions.base_name(name))
        except UnknownModel:  # a merged version outlives its base
            return name
        return chat_model(self.workspace.library, versions, base).name

    def choose(self, name: str) -> str | None:
        """The model to load for the person's choice of ``name`` (the picker, "Chat with
        it"), or None when it answers already. A base answers with its active version; a
        version chosen by name becomes the active one of its base, so the picker and the
        Teach panel's version list always name the same model."""
        versions = ActiveVersions(self.workspace.home)
        base = versions.base_of(name)
        if base is not None and versions.active(base) != name:
            versions.activate(base, name)
            self.versions_changed.emit(base, name)
        elif base is None:
            name = self.model_for(name)
        if name == self.model_name and self.state in (ModelState.READY, ModelState.LOADING):
            self.changed.emit()  # the picker shows what answers
            return None
        return name

    def select(self, name: str) -> bool:
        """Make ``name`` the chosen model; False (and a problem) if the library lacks it."""
        try:
            self.workspace.library.get(name)
        except UnknownModel as exc:
            self.problem.emit(Problem(str(exc), ProblemAction.RELOAD))
            return False
        self.model_name = name
        return True

    # -------------------------------------------------------------- running

    def load(self) -> None:
        """Load the chosen model, starting the worker first if it is not running."""
        if self.client.alive and not self._starter.busy:
            self._load()
        else:
            self.launch(restart=False)

    def launch(self, restart: bool) -> None:
        """Start the worker (restart: a fresh process) and then load, without blocking."""
        if self._starter.busy:
            return
        self.set_state(ModelState.STARTING)
        self.problem.emit(None)
        # Process start-up takes a second or more; whatever goes wrong there (not only a
        # WorkerError) becomes the "did not start" problem with its Reload button.
        self._starter.run(self.client.restart if restart else self.client.start,
                          lambda _r: self._on_worker_started(),
                          lambda exc: self._on_worker_start_failed(str(exc)),
                          name="worker-start")

    def unload(self) -> None:
        """Free the model's memory (a fine-tune needs it); :meth:`load` brings it back."""
        self.loaded = None
        if self.client.alive:
            try:
                self.client.unload()
            except WorkerError as exc:
                log.info("could not unload: %s", exc)
        self.set_state(ModelState.STOPPED)

    def set_state(self, state: ModelState) -> None:
        self.state = state
        self.changed.emit()

    def shutdown(self) -> None:
        """The window closes: a worker still starting is waited for, and not loaded."""
        self._closing = True
        self._starter.shutdown(timeout=30)

    def _load(self) -> None:
        """Ask the worker to load; progress and the result come back as events."""
        if self.model_name is None:
            self.set_state(ModelState.STOPPED)
            return
        record = self.workspace.library.get(self.model_name)
        loaded = (self.loaded.path if self.loaded is not None
                  and self.state == ModelState.READY else None)
        try:
            plan = plan_load(record, self.workspace.library, loaded, self._live_ok)
        except LibraryError as exc:
            self.set_state(ModelState.FAILED)
            self.problem.emit(Problem(str(exc), ProblemAction.RELOAD))
            return
        self._pending_adapter = plan.adapter if not plan.switch_only else plan.adapter or ""
        if plan.switch_only:  # the base is loaded already: milliseconds, no reload
            self.set_state(ModelState.LOADING)
            self.client.set_adapter(plan.adapter)
            return
        load = self.workspace.settings.load
        self.state, self.progress, self.loaded = ModelState.LOADING, 0.0, None
        self.changed.emit()
        self.client.load(plan.path, n_ctx=load.n_ctx, n_gpu_layers=load.n_gpu_layers,
                         n_threads=load.n_threads, flash_attn=load.flash_attn,
                         template=self.workspace.settings.template_for(record.name),
                         cache_type=load.cache_type, prompt_lookup=load.prompt_lookup)
        if plan.adapter is not None:
            self.client.set_adapter(plan.adapter)

    def _is_live_only(self) -> bool:
        try:
            record = self.workspace.library.get(self.model_name or "")
        except UnknownModel:
            return False
        return record.live_only

    def _on_worker_started(self) -> None:
        if not self._closing:
            self._load()

    def _on_worker_start_failed(self, message: str) -> None:
        self.set_state(ModelState.FAILED)
        self.problem.emit(Problem(f"The model worker did not start. {message}",
                                  ProblemAction.RELOAD, details=message))

    # --------------------------------------------------------------- events

    def handle(self, event: object) -> None:
        """Follow a worker event about the model (others pass by). A crash only moves
        the state: the chat says so, since it knows which reply was cut off."""
        if isinstance(event, p.LoadProgress):
            self.progress = event.fraction
            self.changed.emit()
        elif isinstance(event, p.Loaded):
            self.loaded = event
            self.adapter = None
            if self._pending_adapter is None:  # else ready once the adapter is applied
                self.state = ModelState.READY
            self.changed.emit()
        elif isinstance(event, p.AdapterSet):
            self._pending_adapter = None
            self.adapter = event.path
            self.set_state(ModelState.READY)
        elif isinstance(event, p.Error) and event.error_kind == "adapter_failed":
            self._on_adapter_refused(event.message)
        elif isinstance(event, p.KernelFallback):
            self.notice = event.message
            self.changed.emit()
        elif isinstance(event, p.WorkerDied):
            self.loaded = None
            self.set_state(ModelState.CRASHED)
        elif isinstance(event, p.Error) and event.request_id is None:
            if event.error_kind == "load_failed" or self.state == ModelState.LOADING:
                self.loaded = None
                self.set_state(ModelState.FAILED)
                self.problem.emit(Problem(f"The model could not be loaded: {event.message}",
                                          ProblemAction.RELOAD))
            else:
                log.warning("worker error: %s", event.message)

    def _on_adapter_refused(self, message: str) -> None:
        if self._is_live_only():  # nothing else to load
            self._pending_adapter = None
            self.set_state(ModelState.FAILED)
            self.problem.emit(Problem(f"The adapter could not be applied: {message}",
                                      ProblemAction.RELOAD))
            return
        # The adapter does not fit after all: load the merged model instead.
        log.warning("live adapter refused, loading the merged model: %s", message)
        self._pending_adapter, self._live_ok = None, False
        self._load()
        self._live_ok = True
