"""A small real tokenizer with a Qwen2.5-style chat template, and a scripted Policy over it,
for rollout tests that must not depend on a trained model."""

from __future__ import annotations

import asyncio
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from agent_rl.policy.base import Generation, Policy, SamplingParams

# transformers compiles templates with trim_blocks: a newline right after a block tag is dropped,
# so such newlines are written as expressions.
TEMPLATE = (
    "{% if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n<tools>{% for t in tools %}{{ '\\n' }}{{ t | tojson }}{% endfor %}{{ '\\n</tools><|im_end|>\\n' }}"
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}"
    "{% elif m.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ '\\n<tool_response>\\n' }}{{ m.content }}\n</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ['<tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>',
              "What is 2 + 2? The answer is 4.", "tool_response system user assistant"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_tokens(["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"])
    fast.chat_template = TEMPLATE
    return fast


class ScriptedPolicy(Policy):
    """Emits scripted turns; ``script(task_text, turn_index) -> (text, entropy)`` decides each."""

    def __init__(self, tokenizer, script, *, stop_at_eos: bool = True) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.seqs: dict[int, list[int]] = {}
        self.turns: dict[int, int] = {}
        self.calls: list[int] = []
        self.stop_at_eos = stop_at_eos
        self._next = 0

    def new_sequence(self, prompt_ids):
        self._next += 1
        self.seqs[self._next] = list(prompt_ids)
        self.turns[self._next] = 0
        return self._next

    def append(self, seq, ids):
        self.seqs[seq] += list(ids)

    def fork(self, seq, n):
        out = []
        for _ in range(n):
            self._next += 1
            self.seqs[self._next] = list(self.seqs[seq])
            self.turns[self._next] = self.turns[seq]
            out.append(self._next)
        return out

    def release(self, seq):
        self.seqs.pop(seq, None)

    def token_ids(self, seq):
        return list(self.seqs[seq])

    async def generate(self, seqs, params: SamplingParams):
        self.calls.append(len(seqs))
        await asyncio.sleep(0.001)
        out = []
        for s in seqs:
            text, entropy = self.script(self.tokenizer.decode(self.seqs[s]), self.turns[s])
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            finish = "length"
            if len(ids) >= params.max_new_tokens:
                ids = ids[: params.max_new_tokens]
            elif self.stop_at_eos:
                ids = ids + [self.tokenizer.eos_token_id]
                finish = "stop"
            self.seqs[s] += ids
            self.turns[s] += 1
            out.append(Generation(ids, [-0.5] * len(ids), [entropy] * len(ids), finish))
        return out


def call(name: str, **args) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"
