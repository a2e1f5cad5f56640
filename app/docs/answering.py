"""Does a model answer from a document? The same questions asked with and without its
passages, each answer judged against the answer the question has.

One asking serves three readers: ``hearth bench docs`` (answer correctness with and
without retrieval), ``hearth docs compare`` and the Documents room's comparison after
Teach (base, base + retrieval, taught, taught + retrieval). A question is asked as the
chat asks it: greedy, through the real inference worker, the passages grounded by
:func:`app.docs.citing.ground` exactly as a conversation that uses the collection gets
them. An answer is right when it says what the expected answer says
(:func:`app.teach.judge.carries`: at least 70 % of the expected answer's words that the
question does not already contain, all of them when there are one or two), the test
Teach's gate uses for "learned", so that "answers from the document" and "learned the
document" are one measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.docs.citing import Retriever
from app.docs.store import Question
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.teach import judge

MAX_TOKENS = 80
"""An answer's length: a sentence or two, the judge reads what it names."""


@dataclass
class Answer:
    text: str
    right: bool
    cited: list[str] = field(default_factory=list)
    """Where the passages the model was given came from ("kiln.md, page 2")."""


def is_right(question: Question, text: str) -> bool:
    return judge.carries(text, question.answer, "", question.question)


def ask_all(client: InferenceClient, questions: list[Question],
            retriever: Retriever | None, n_ctx: int) -> list[Answer]:
    """Each question answered by the model the client has loaded; with ``retriever``,
    from the passages it finds (the chat's grounding), else from the model alone."""
    sampling = p.SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=0)
    out: list[Answer] = []
    for q in questions:
        content, cited = q.question, []
        if retriever is not None:
            grounding = retriever.ground(q.question, n_ctx, MAX_TOKENS)
            content, cited = grounding.content, [s.where for s in grounding.sources]
        done = client.reply_blocking([{"role": "user", "content": content}], sampling)
        out.append(Answer(done.text.strip(), is_right(q, done.text), cited))
    return out


def score(answers: list[Answer]) -> str:
    """"7 of 12" (the form every report of these uses)."""
    return f"{sum(a.right for a in answers)} of {len(answers)}"
