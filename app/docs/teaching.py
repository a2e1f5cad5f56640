"""Teaching a document: questions drafted from its sentences, taught through Teach's gate,
and the four ways a model can then know it compared.

A model can know a document two ways: look it up (retrieval, :mod:`app.docs.citing`) or
learn it (Teach). Hearth offers both and measures which answered better.

**Drafting.** Sentences are picked evenly over the collection's passages (each once: the
passages overlap), and for each the chat model writes the question the sentence answers.
The answer is the sentence itself, verbatim, so nothing the model invents can be taught
as the document's word; only the question is the model's. It is asked as a plain
completion after three worked examples (no chat template): the starter model
(SmolLM2-135M), asked through its chat template, answered "What is the answer to this
question?" for 10 of 12 sentences of the kiln guide, and wrote questions about them
after the examples ("What is kiln wash?"). A draft is kept only when it is a question of
a sensible length about the sentence (sharing a content word with it) that leaves the
answer to the sentence (half its content words or more, and two at least, are the
sentence's: "What is the studio's most expensive car?" for the kiln's size is not); the
rest are named with the reason. Every fourth kept draft is
held out: never trained on, asked after Teach to tell learning the document from
learning its training questions. The others become corrections of the chat model
(``source`` says where in the document), listed in the Datasets tab to edit or remove,
then taught with any other corrections through the same gate (neighbours, everyday
answers, rewordings).

**Comparing.** The held-out questions are asked four ways — the base alone, the base
with the collection's passages, the taught version alone, the taught version with the
passages — through the real worker, greedy, each judged by :mod:`app.docs.answering`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from app.chat.corrections import CorrectionStore, TrainingExample
from app.docs.answering import Answer, ask_all, score
from app.docs.citing import Retriever
from app.docs.embedder import Embedder
from app.docs.shelf import Shelf
from app.docs.store import DocumentStore, Question, StoredPassage
from app.errors import BadInput
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import ModelRecord
from app.models.live import LoadPlan, plan_load
from app.models.versions import ActiveVersions, chat_model
from app.teach import judge
from app.workspace import Workspace

Loader = Callable[[LoadPlan], None]
Progress = Callable[[int, int], None]

HOLD_OUT_EVERY = 4
"""Every fourth kept draft is asked after Teach instead of trained on."""
MIN_WORDS, MAX_WORDS = 6, 60
"""A sentence worth a question: long enough to say something, short enough to learn."""
QUESTION_WORDS = (3, 25)
SHOTS = (
    "Sentence: The library opens at nine o'clock on Saturdays.\n"
    "Question: When does the library open on Saturdays?\n\n"
    "Sentence: Bikes must be returned to a dock within two hours, or a late fee of five "
    "pounds is charged.\n"
    "Question: What happens if a bike is not returned within two hours?\n\n"
    "Sentence: The museum's oldest clock was built by Jonas Kell in 1712.\n"
    "Question: Who built the museum's oldest clock?\n\n")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


@dataclass
class Draft:
    question: str
    answer: str
    """The sentence, verbatim from the document."""
    source: str
    """Where the sentence is ("kiln.md, page 2")."""
    dropped: str = ""
    """Why the draft is not used ("" when it is)."""
    held_out: bool = False

    def line(self) -> str:
        """The draft as the terminal and the Documents tab list it (the model's question
        and the document's sentence: print it as plain text)."""
        mark = (f"dropped: {self.dropped}" if self.dropped else
                "held out" if self.held_out else "to teach")
        return f"[{mark}] {self.question or '(no question)'}\n    → {self.answer} ({self.source})"


def sentences_of(passage: StoredPassage) -> list[str]:
    """The passage's sentences worth a question (list items as sentences; headings out)."""
    out = []
    for line in passage.text.splitlines():
        if line.lstrip().startswith(("#", "|")):
            continue
        for sentence in judge.sentences(_LIST_MARK.sub("", line)):
            if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and sentence[-1] in ".!?":
                out.append(sentence)
    return out


def pick(passages: list[StoredPassage], n: int) -> list[tuple[str, str]]:
    """Up to ``n`` sentences, (sentence, where), spread evenly over the collection."""
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for passage in passages:
        for sentence in sentences_of(passage):
            if sentence not in seen:  # passages overlap: a sentence is drafted once
                seen.add(sentence)
                found.append((sentence, passage.where))
    if len(found) <= n:
        return found
    step = len(found) / n
    return [found[int(i * step)] for i in range(n)]


def why_not(question: str, sentence: str) -> str:
    """Why ``question`` is no use for ``sentence``, or "" when it is."""
    count = len(question.split())
    if not question.endswith("?"):
        return "not a question"
    if not QUESTION_WORDS[0] <= count <= QUESTION_WORDS[1]:
        return "too short" if count < QUESTION_WORDS[0] else "too long"
    asked, said = judge.content_words(question), judge.content_words(sentence)
    if len(asked & said) < min(2, len(asked)) or len(asked & said) < len(asked) / 2:
        return "not about the sentence"
    if len(said - asked) < 2:
        return "the question already says the answer"
    return ""


def draft_question(client: InferenceClient, sentence: str) -> str:
    sampling = p.SamplingParams(temperature=0.0, max_tokens=48, seed=0, stop=["\n"])
    prompt = f"{SHOTS}Sentence: {' '.join(sentence.split())}\nQuestion:"
    done = client.reply_blocking([{"role": "user", "content": prompt}], sampling, raw=True)
    return " ".join(done.text.split())


def draft(client: InferenceClient, passages: list[StoredPassage], n: int,
          progress: Progress | None = None,
          cancelled: Callable[[], bool] | None = None) -> list[Draft]:
    """Drafts for up to ``n`` sentences with the model ``client`` has loaded; when
    ``cancelled`` says so, the drafts made until then."""
    chosen = pick(passages, n)
    drafts: list[Draft] = []
    for i, (sentence, where) in enumerate(chosen):
        if cancelled is not None and cancelled():
            break
        question = draft_question(client, sentence)
        drafts.append(Draft(question, sentence, where, why_not(question, sentence)))
        if progress is not None:
            progress(i + 1, len(chosen))
    hold_out(drafts)
    return drafts


def hold_out(drafts: list[Draft]) -> None:
    """Mark every fourth kept draft held out, and the last when fewer than four are kept
    (a lone draft is taught: there is nothing to learn from without it)."""
    kept = [d for d in drafts if not d.dropped]
    held = [d for i, d in enumerate(kept) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    for d in held or (kept[-1:] if len(kept) > 1 else []):
        d.held_out = True


def save(drafts: list[Draft], collection: str, model: str, store: DocumentStore,
         corrections: CorrectionStore) -> list[TrainingExample]:
    """Kept drafts as corrections of ``model``, held-out ones kept for the comparison."""
    store.hold_out(collection, [Question(d.question, d.answer, d.source)
                                for d in drafts if d.held_out and not d.dropped])
    return [corrections.add_pair(model, d.question, d.answer, f"{collection}: {d.source}")
            for d in drafts if not d.held_out and not d.dropped]


# ------------------------------------------------------------------ comparing


@dataclass
class Way:
    name: str
    answers: list[Answer]

    @property
    def right(self) -> int:
        return sum(a.right for a in self.answers)


@dataclass
class Comparison:
    questions: list[Question]
    ways: list[Way] = field(default_factory=list)
    taught: str | None = None
    """The taught version compared; None: nothing taught yet (the base's two ways)."""
    base: str = ""

    def lines(self) -> list[str]:
        n = len(self.questions)
        out = [f"{n} question{'s' if n != 1 else ''} about the document, answered right:"]
        out += [f"  {w.name:<20} {score(w.answers)}" for w in self.ways]
        if self.taught is None:
            out.append("  (nothing taught yet: teach the corrections, then compare again)")
        return out

    def to_json(self) -> dict[str, object]:
        return {"base": self.base, "taught": self.taught, "questions": len(self.questions),
                "ways": {w.name: {"right": w.right, "answers": [
                    {"question": q.question, "expected": q.answer, "answer": a.text,
                     "right": a.right, "cited": a.cited}
                    for q, a in zip(self.questions, w.answers, strict=True)]}
                    for w in self.ways}}


def compare(client: InferenceClient, questions: list[Question], retriever: Retriever,
            base: LoadPlan, taught: tuple[str, LoadPlan] | None, n_ctx: int,
            load: Loader) -> Comparison:
    """Ask ``questions`` of the base and of ``taught`` (its name and how to load it),
    each alone and with the collection's passages. ``load`` gets a plan into the worker
    (a reload, or only an adapter switch)."""
    result = Comparison(questions, taught=taught[0] if taught else None)
    plans = [("base", base)] + ([("taught", taught[1])] if taught else [])
    for name, plan in plans:
        load(plan)
        result.ways.append(Way(name, ask_all(client, questions, None, n_ctx)))
        result.ways.append(Way(f"{name} + documents",
                               ask_all(client, questions, retriever, n_ctx)))
    return result


# ------------------------------------------------------------------ the whole steps


@contextlib.contextmanager
def model_worker(ws: Workspace, template_of: str) -> Iterator[tuple[InferenceClient, Loader]]:
    """A chat worker of its own (the window's chat stays usable meanwhile) and a way to
    get a load plan into it: a reload only when the file changes, else only the adapter.
    ``template_of``: the model whose chat template setting applies (the base's)."""
    client = InferenceClient(log_file=ws.home.logs / "inference-worker.log", home=ws.home)
    loaded: list[str] = []
    settings = ws.settings.load

    def load(plan: LoadPlan) -> None:
        if loaded != [str(plan.path)]:
            client.load_blocking(plan.path, n_ctx=settings.n_ctx,
                                 n_gpu_layers=settings.n_gpu_layers,
                                 n_threads=settings.n_threads,
                                 template=ws.settings.template_for(template_of))
            loaded[:] = [str(plan.path)]
        client.set_adapter_blocking(plan.adapter)

    try:
        client.start()
        yield client, load
    finally:
        client.close()


def draft_collection(ws: Workspace, collection: str, base: ModelRecord, n: int,
                     progress: Progress | None = None,
                     cancelled: Callable[[], bool] | None = None
                     ) -> tuple[list[Draft], list[TrainingExample]]:
    """Draft questions about ``collection`` with the model the chat answers with for
    ``base`` (its active version), and save them: corrections of ``base`` to teach, the
    held-out ones kept for :func:`compare_collection`. Stopped (``cancelled``), the
    drafts made so far are saved."""
    store = DocumentStore(ws.library.conn)
    passages = store.passages(collection)  # an unknown name says so
    if not passages:
        raise BadInput(f"the collection {collection} has no passages; add documents "
                       f"to it first (hearth docs add -c {collection} PATH)")
    record = chat_model(ws.library, ActiveVersions(ws.home), base)
    with model_worker(ws, base.name) as (client, load):
        load(plan_load(record, ws.library, None))
        drafts = draft(client, passages, n, progress, cancelled)
    return drafts, save(drafts, collection, base.name, store,
                        CorrectionStore(ws.library.conn))


def compare_collection(ws: Workspace, collection: str, base: ModelRecord,
                       questions: list[Question] | None = None) -> Comparison:
    """:func:`compare` on the held-out questions (or ``questions``) with the base and
    its active taught version, the passages found in ``collection``."""
    store = DocumentStore(ws.library.conn)
    store.collection_ids([collection])  # an unknown name says so, whatever is asked
    asked = questions if questions is not None else store.held_out(collection)
    if not asked:
        raise BadInput(f"no held-out questions about {collection} yet; draft some first "
                       f"(hearth docs draft -c {collection})")
    taught = chat_model(ws.library, ActiveVersions(ws.home), base)
    shelf = Shelf(store, lambda: Embedder.for_home(ws.home))
    try:
        with model_worker(ws, base.name) as (client, load):
            result = compare(client, asked, Retriever(shelf.search, (collection,)),
                             plan_load(base, ws.library, None, live=False),
                             (taught.name, plan_load(taught, ws.library, None))
                             if taught.name != base.name else None,
                             ws.settings.load.n_ctx, load)
    finally:
        shelf.close()
    result.base = base.name
    return result
