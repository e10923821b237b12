"""Chat examples -> text, with the model tokenizer's chat template (else the task's).

A chat example (data.CHAT) holds the conversation before the answer and the answer (the last
assistant message). It is rendered twice with the template: the conversation with the
generation prompt (`add_generation_prompt=True`) is the prompt, and the full conversation,
answer included, must start with it; the rest is the answer, template markup included (the
assistant's end of turn), and the loss falls on its tokens only. This is how TRL splits a
conversational prompt/completion. Templates that rewrite earlier turns once an answer follows
(e.g. ones that drop past reasoning) fail that check and are named in the error.

The template: the model tokenizer's own (`tokenizer.apply_chat_template`); if it has none,
`TaskSpec.chat_template`; a tiny model's tokenizer (trained on the task text, runner/models.py)
never has one, and its template is rendered by transformers' own Jinja renderer with its
special tokens. Neither: an error naming the model and the task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from prehoc_ray.runner.data import CHAT, RENDERED, Example, TaskData
from prehoc_ray.runner.errors import RunnerInputError

# (messages, add_generation_prompt) -> text
Renderer = Callable[[list[dict[str, str]], bool], str]

_LOCK = threading.Lock()
_TOKENIZERS: dict[str, Any] = {}
_RENDERED: dict[tuple[int, int, str], tuple[TaskData, Any, TaskData]] = {}


def model_tokenizer(model_spec: Any, base: Any) -> Any | None:
    """The model's transformers tokenizer, or None for a tiny model (a bare `tokenizers` BPE):
    the one runner/models.py loaded when it exposes it (`Base.tokenizer`), else re-read from the
    model's directory (a path, a cached hub snapshot, the converted package model)."""
    for holder in (base, getattr(base, "codec", None)):
        tok = getattr(holder, "tokenizer", None)
        if tok is not None and hasattr(tok, "apply_chat_template"):
            return tok
    if getattr(model_spec, "tiny", None) is not None:
        return None
    if getattr(model_spec, "path", None) is not None:
        directory = Path(model_spec.path).expanduser()
    elif getattr(model_spec, "hub", None) is not None:
        from prehoc_ray.runner.models import resolve_hub

        directory = resolve_hub(
            model_spec.hub, getattr(model_spec, "revision", None), what=f"model {model_spec.name!r}"
        )
    elif getattr(model_spec, "package", None) is not None:
        from prehoc_ray.runner.models import smollm2_dir

        directory = smollm2_dir()
    else:
        raise RunnerInputError(
            f"model {model_spec.name!r}: chat data needs the model's tokenizer for its chat template, "
            "and this model source does not expose one"
        )
    key = str(directory.resolve())
    with _LOCK:
        tok = _TOKENIZERS.get(key)
        if tok is None:
            from transformers import AutoTokenizer

            try:
                remote = bool(getattr(model_spec, "trust_remote_code", False))
                tok = _TOKENIZERS[key] = AutoTokenizer.from_pretrained(key, trust_remote_code=remote)
            except Exception as e:
                raise RunnerInputError(f"model {model_spec.name!r}: cannot load a tokenizer from {key!r}: {e}") from e
    return tok


def chat_renderer(model_spec: Any, task_spec: Any, base: Any) -> tuple[Renderer, str]:
    """(render, where the template came from) for chat data of `task_spec` on this model."""
    tok = model_tokenizer(model_spec, base)
    spec_template = getattr(task_spec, "chat_template", None)
    if tok is not None and getattr(tok, "chat_template", None):
        where = f"the chat template of model {model_spec.name!r}"

        def render(messages: list[dict[str, str]], generation: bool) -> str:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

        return render, where
    if spec_template is None:
        has = "a tiny model's tokenizer has no chat template" if tok is None else "its tokenizer has no chat template"
        raise RunnerInputError(
            f"task {task_spec.name!r}: chat data needs a chat template: model {model_spec.name!r} has none "
            f"({has}); set chat_template in the task (a Jinja string, e.g. ChatML's)"
        )
    where = f"the chat_template of task {task_spec.name!r}"
    if tok is not None:

        def render(messages: list[dict[str, str]], generation: bool) -> str:
            return tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation, chat_template=spec_template
            )

        return render, where
    from transformers.utils.chat_template_utils import render_jinja_template

    from prehoc_ray.runner.models import EOS, PAD

    # a tiny model's special tokens: <pad>, and <eos> doubling as bos (runner/models.py)
    special = {"bos_token": EOS, "eos_token": EOS, "pad_token": PAD}

    def render(messages: list[dict[str, str]], generation: bool) -> str:
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=spec_template, add_generation_prompt=generation, **special
        )
        return rendered[0]

    return render, where


def tokenizer_texts(task: TaskData, task_spec: Any) -> Iterator[str]:
    """What a tiny model's tokenizer is trained on: the task's text and, for chat data with a
    task chat_template, the rendered conversations (so the template's markup gets merges)."""
    yield from task.texts()
    template = getattr(task_spec, "chat_template", None)
    if not task.needs_chat_template or template is None:
        return
    from transformers.utils.chat_template_utils import render_jinja_template

    from prehoc_ray.runner.models import EOS, PAD

    for ex in task.train + task.eval:
        if ex.style == CHAT:
            messages = [{"role": r, "content": c} for r, c in ex.messages] + [
                {"role": "assistant", "content": ex.answer}
            ]
            try:
                rendered, _ = render_jinja_template(
                    conversations=[messages], chat_template=template, bos_token=EOS, eos_token=EOS, pad_token=PAD
                )
            except Exception:  # the render step names a broken template
                return
            yield rendered[0]


def render_example(ex: Example, render: Renderer, where: str, task_name: str) -> Example:
    """A chat example as (prompt, answer) text: prompt = the conversation with the generation
    prompt, answer = what the full conversation adds to it."""
    if ex.style != CHAT:
        return ex
    messages = [{"role": r, "content": c} for r, c in ex.messages]
    try:
        prompt = render(messages, True)
        full = render(messages + [{"role": "assistant", "content": ex.answer}], False)
    except Exception as e:  # jinja2 TemplateError, a template's raise_exception(...)
        raise RunnerInputError(
            f"task {task_name!r}: {where} cannot render a conversation: {type(e).__name__}: {e}"
        ) from e
    if not full.startswith(prompt) or not full[len(prompt) :].strip():
        raise RunnerInputError(
            f"task {task_name!r}: {where} does not render a conversation as its prompt (with the generation "
            "prompt) followed by the answer, so the answer tokens cannot be told apart; set a task chat_template "
            "that does"
        )
    return Example(prompt, full[len(prompt) :], RENDERED, ex.messages)


def render_task(task: TaskData, render: Renderer, where: str) -> TaskData:
    """The task with every chat example rendered; classification labels are rendered after the
    first evaluation prompt (a template's answer markup does not depend on the prompt)."""
    train = tuple(render_example(ex, render, where, task.name) for ex in task.train)
    evals = tuple(render_example(ex, render, where, task.name) for ex in task.eval)
    labels = task.labels
    if labels is not None:
        first = next(ex for ex in task.eval if ex.style == CHAT)
        labels = tuple(
            sorted({render_example(replace(first, answer=label), render, where, task.name).answer for label in labels})
        )
    return replace(task, train=train, eval=evals, labels=labels)


def rendered_task(task: TaskData, model_spec: Any, task_spec: Any, base: Any) -> TaskData:
    """`task` ready to tokenise for this model: chat examples rendered (cached per loaded task and
    base model), anything else unchanged."""
    if not task.needs_chat_template:
        return task
    key = (id(task), id(base), model_spec.model_dump_json() + "|" + str(task_spec.chat_template))
    with _LOCK:
        hit = _RENDERED.get(key)
    if hit is not None and hit[0] is task and hit[1] is base:
        return hit[2]
    render, where = chat_renderer(model_spec, task_spec, base)
    out = render_task(task, render, where)
    with _LOCK:
        _RENDERED[key] = (task, base, out)  # the references keep the ids in the key valid
    return out


def clear_cache() -> None:
    with _LOCK:
        _TOKENIZERS.clear()
        _RENDERED.clear()
