"""Rendering conversations for causal-LM fine-tuning: the model's chat template, or a plain
fallback, with the tokens to score (assistant turns only).

A conversation is a tuple of ``(role, content)`` turns (roles ``system``, ``user``,
``assistant``; see :mod:`scalelab.data.text`).

- **Chat template** (the default when the tokenizer has one): the text is exactly
  ``tokenizer.apply_chat_template(turns)``, tokenized as that method does (no extra special
  tokens). The scored tokens of assistant turn ``i`` are those whose characters fall in
  ``[len(render(turns[:i], add_generation_prompt=True)), len(render(turns[:i + 1])))``, with
  trailing whitespace dropped: the answer and the template's end-of-turn token (e.g.
  ``<|im_end|>``), which teaches the model to stop.
- **Fallback** (no template, or ``chat_template=False``): ``[system "\\n\\n"]`` then, per
  exchange, ``"Question: {user}\\nAnswer:"`` and ``" {assistant}" + EOS``, exchanges joined by
  ``"\\n"``; the answer and its EOS are scored. The prompt part is tokenized with the
  tokenizer's special tokens (e.g. BOS), the rest without.

Truncation to ``max_length`` keeps the first assistant turn: a window of ``max_length`` tokens
ending at that turn's end when it fits (the prompt is cut from the left, the part next to
the answer kept), else starting one token before it (its start kept, its end cut). Every
example keeps at least one scored token. Interpretation: TRL truncates from the right; we
keep the answer because it is what is scored.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The fallback format's prompt for one exchange (the answer follows after a space).
PROMPT_FORMAT = "Question: {}\nAnswer:"


def as_turns(example) -> tuple[tuple[str, str], ...]:
    """A conversation from an example: turns as they are, or a ``(prompt, response)`` pair
    as a user and an assistant turn."""
    if len(example) == 2 and all(isinstance(v, str) for v in example):
        return (("user", example[0]), ("assistant", example[1]))
    return tuple((str(r), str(c)) for r, c in example)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _messages(turns) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


def _with_system(turns, system_prompt: str | None):
    if system_prompt and not (turns and turns[0][0] == "system"):
        return (("system", system_prompt),) + tuple(turns)
    return tuple(turns)


def render_template(tokenizer, turns) -> tuple[list[int], list[bool]]:
    """Token ids of ``turns`` rendered by the tokenizer's chat template, and which are scored."""
    def render(ts, gen=False) -> str:
        return tokenizer.apply_chat_template(_messages(ts), tokenize=False,
                                             add_generation_prompt=gen)

    full = render(turns)
    spans, pos = [], 0
    for i, (role, content) in enumerate(turns):
        if role != "assistant":
            continue
        start, end = len(render(turns[:i], gen=True)), len(render(turns[:i + 1]))
        if not (full.startswith(render(turns[:i + 1])) and start <= end):
            # a template whose prefixes are not prefixes of the whole: find the answer itself
            start = full.find(content, pos)
            if start < 0:
                raise ValueError("the chat template does not reproduce an assistant message "
                                 "verbatim; use chat_template=False (--no-chat-template)")
            end = start + len(content)
        end = start + len(full[start:end].rstrip())
        spans.append((start, end))
        pos = end
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("chat-template rendering needs a fast tokenizer (character offsets); "
                         "use chat_template=False (--no-chat-template)")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    scored = [any(a < e and b > s for s, e in spans) for a, b in enc["offset_mapping"]]
    return list(enc["input_ids"]), scored


def _fallback_segments(tokenizer, turns) -> list[tuple[str, bool]]:
    """The fallback format as ``(text, is_answer)`` segments, prompts and answers alternating."""
    eos = tokenizer.eos_token or tokenizer.sep_token or ""
    system = " ".join(c for r, c in turns if r == "system")
    segments: list[tuple[str, bool]] = []
    pending = system + "\n\n" if system else ""
    for role, content in turns:
        if role == "user":
            pending += ("\n" if segments else "") + PROMPT_FORMAT.format(content)
        elif role == "assistant":
            segments += [(pending, False)] if pending else []
            segments.append((" " + content + eos, True))
            pending = ""
    if pending:
        segments.append((pending, False))
    return segments


def _tokenize_segments(tokenizer, segments) -> tuple[list[int], list[bool]]:
    ids: list[int] = []
    scored: list[bool] = []
    for i, (text, answer) in enumerate(segments):
        t = tokenizer(text, add_special_tokens=(i == 0 and not answer))["input_ids"]
        ids += t
        scored += [answer] * len(t)
    return ids, scored


def render_fallback(tokenizer, turns) -> tuple[list[int], list[bool]]:
    """Token ids of ``turns`` in the plain fallback format, and which are scored."""
    return _tokenize_segments(tokenizer, _fallback_segments(tokenizer, turns))


def render(tokenizer, example, *, chat_template: bool = True,
           system_prompt: str | None = None) -> tuple[list[int], list[bool]]:
    """Token ids of one causal-LM example and a mask of the tokens to score.

    Args:
        tokenizer: a Hugging Face tokenizer.
        example: a conversation (``(role, content)`` turns) or a ``(prompt, response)`` pair.
        chat_template: use the tokenizer's chat template when it has one.
        system_prompt: a system turn put first when the conversation has none.
    """
    turns = _with_system(as_turns(example), system_prompt)
    if chat_template and has_chat_template(tokenizer):
        return render_template(tokenizer, turns)
    return render_fallback(tokenizer, turns)


def prompt_ids(tokenizer, example, *, chat_template: bool = True,
               system_prompt: str | None = None) -> list[int]:
    """Token ids to generate from: the conversation up to its last assistant turn (or all of
    it when it has none), ending where the model's answer starts."""
    turns = _with_system(as_turns(example), system_prompt)
    if turns and turns[-1][0] == "assistant":
        turns = turns[:-1]
    if chat_template and has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(_messages(turns), tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids, _ = _tokenize_segments(tokenizer, _fallback_segments(tokenizer, turns))
    return ids


def truncate(ids: Sequence[int], scored: Sequence[bool], max_length: int
             ) -> tuple[list[int], list[bool], bool]:
    """The window of at most ``max_length`` tokens that keeps the first scored turn (see the
    module docstring); returns ``(ids, scored, was_truncated)``."""
    n = len(ids)
    if n <= max_length:
        return list(ids), list(scored), False
    if True not in scored:
        return list(ids[n - max_length:]), list(scored[n - max_length:]), True
    s = scored.index(True)
    e = s
    while e < n and scored[e]:
        e += 1
    start = max(0, min(max(s - 1, 0), e - max_length))
    window = slice(start, start + max_length)
    return list(ids[window]), list(scored[window]), True
