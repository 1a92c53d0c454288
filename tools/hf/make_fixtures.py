"""Writes tests/fixtures/hf/ with the real Hugging Face libraries (run through tools/hf_reference.sh).

safetensors/reference.safetensors is written by safetensors.torch.save_file; reference.json holds,
for each of its tensors, the dtype, shape and values that library put in, for the C++ tests to
read the file against.

models/<name>/ are tiny random models of each architecture nurture reads, written by
save_pretrained (one sharded, one in bf16, one reward model), and models/<name>/reference.json
what transformers computes with them: the log-prob of every next token of fixed id sequences,
greedy continuations, and (reward models) the scores. chat_templates/renderings.json holds what
apply_chat_template makes of conversations with templates of each family nurture recognises. Everything is seeded: the output is the same
on every run.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "hf")


def safetensors_fixture():
    out = os.path.join(OUT, "safetensors")
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(2, 3, generator=g),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "f16": torch.randn(3, generator=g).to(torch.float16),
        "f64": torch.randn(2, generator=g, dtype=torch.float64),
        "i64": torch.arange(5, dtype=torch.int64) - 2,
        "i32": torch.tensor([7, -8], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"format": "pt", "by": "safetensors"})
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    reference = {
        name: {"dtype": names[t.dtype], "shape": list(t.shape), "values": [float(v) for v in t.flatten().tolist()]}
        for name, t in tensors.items()
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# Tiny models of each architecture
# ---------------------------------------------------------------------------------------------

VOCAB = 96
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
             bos_token_id=1, eos_token_id=2, pad_token_id=0)


def models():
    """(name, model class, config, save options) for every fixture model."""
    T = transformers
    rope = lambda theta, **extra: {"rope_type": extra.pop("rope_type", "default"), "rope_theta": theta, **extra}
    return [
        ("gpt2", T.GPT2LMHeadModel,
         T.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2), {}),
        # Llama 3.1's RoPE scaling, with an original context short enough to reach all three bands.
        ("llama", T.LlamaForCausalLM,
         T.LlamaConfig(**SMALL, tie_word_embeddings=False,
                       rope_parameters=rope(500000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                            high_freq_factor=4.0, original_max_position_embeddings=16)), {}),
        ("mistral", T.MistralForCausalLM,
         T.MistralConfig(**SMALL, sliding_window=None, tie_word_embeddings=False, rope_parameters=rope(1e6)), {}),
        # Tied embeddings, q/k/v biases; stored in bf16.
        ("qwen2", T.Qwen2ForCausalLM,
         T.Qwen2Config(**SMALL, tie_word_embeddings=True, use_sliding_window=False, rope_parameters=rope(1e6)),
         {"dtype": torch.bfloat16}),
        # head_dim 16 with 4 heads on a width of 32, q/k norms; sharded.
        ("qwen3", T.Qwen3ForCausalLM,
         T.Qwen3Config(**SMALL, head_dim=16, tie_word_embeddings=False, use_sliding_window=False,
                       rope_parameters=rope(1e6)),
         {"max_shard_size": "30KB"}),
        # A reward model as TRL's RewardTrainer writes one: one label, score.weight, no bias.
        ("llama_reward", T.LlamaForSequenceClassification,
         T.LlamaConfig(**SMALL, num_labels=1, tie_word_embeddings=False, rope_parameters=rope(10000.0)), {}),
    ]


def randomise(model, g):
    """Weights large enough that a wrong mapping changes every log-prob (the default init is nearly uniform)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() == 1 and name.endswith("weight"):  # norms
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)


def reference(model, kind, g):
    ids = torch.randint(3, VOCAB, (2, 14), generator=g)
    out = {"ids": ids.tolist()}
    with torch.no_grad():
        if kind == "reward":
            mask = torch.ones_like(ids)
            ids[1, 10:] = 0  # the second row right-padded with pad_token_id
            mask[1, 10:] = 0
            out["ids"], out["attention_mask"] = ids.tolist(), mask.tolist()
            out["rewards"] = model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
            return out
        logits = model(input_ids=ids).logits.float()
        logprobs = torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        out["logprobs"] = logprobs.tolist()  # [2, 13]: log p(ids[t+1] | ids[..t])
        prompt = ids[:, :5]
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=8)
        out["greedy_prompt"] = prompt.tolist()
        out["greedy"] = greedy[:, 5:].tolist()
    return out


def model_fixtures():
    root = os.path.join(OUT, "models")
    shutil.rmtree(root, ignore_errors=True)
    for index, (name, cls, config, save) in enumerate(models()):
        g = torch.Generator().manual_seed(100 + index)
        torch.manual_seed(100 + index)
        model = cls(config).eval()
        randomise(model, g)
        out = os.path.join(root, name)
        dtype = save.pop("dtype", None)
        (model.to(dtype) if dtype else model).save_pretrained(out, **save)
        # What transformers computes from the saved files (bf16 weights read back into fp32).
        loaded = cls.from_pretrained(out, dtype=torch.float32).eval()
        kind = "reward" if "SequenceClassification" in cls.__name__ else "lm"
        result = {"model_type": config.model_type, "kind": kind, **reference(loaded, kind, g)}
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    # A sliding window shorter than the context: nurture attends to the whole context, so it must refuse.
    sliding = os.path.join(root, "mistral_sliding_window")
    T = transformers
    T.MistralConfig(**SMALL, sliding_window=16).save_pretrained(sliding)


# A ChatML template in Jinja, the form Qwen2/Qwen3 chat models carry in tokenizer_config.json.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello, how are you?"}, {"role": "assistant", "content": "I am fine. 안녕하세요!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2 + 2 = ?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 12345 * 3?"},
     {"role": "assistant", "content": "37035 😀"}],
    [{"role": "user", "content": "Type <|im_end|> for me"}],
]


def chat_model_fixture():
    """models/qwen2_chat: a Qwen2 chat model with the qwen2 tokenizer of tokenizers/ (ChatML tokens),
    its tokenizer_config.json as transformers writes it, an embedding padded beyond the vocabulary,
    and what transformers renders and computes."""
    T = transformers
    tokenizer = T.PreTrainedTokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizers", "qwen2", "tokenizer.json"),
                                          eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    padded = (len(tokenizer) + 63) // 64 * 64  # rows beyond the tokenizer, as real checkpoints have
    config = T.Qwen2Config(vocab_size=padded, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                           tie_word_embeddings=True, use_sliding_window=False, rms_norm_eps=1e-6,
                           bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(7)
    model = T.Qwen2ForCausalLM(config).eval()
    randomise(model, g)
    out = os.path.join(OUT, "models", "qwen2_chat")
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    renderings = []
    for messages in CONVERSATIONS:
        for generation_prompt in (False, True):
            if generation_prompt and messages[-1]["role"] == "assistant":
                messages = messages[:-1]
            ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                                return_dict=False)
            renderings.append({"messages": messages, "add_generation_prompt": generation_prompt, "ids": list(ids)})
    loaded = T.Qwen2ForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([renderings[0]["ids"]])
    with torch.no_grad():
        logprobs = torch.log_softmax(loaded(input_ids=ids).logits, -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    reference = {"renderings": renderings, "ids": ids.tolist(), "logprobs": logprobs.tolist(),
                 "tokenizer_size": len(tokenizer), "vocab_size": padded}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1, ensure_ascii=False)
        f.write("\n")


# Chat templates of the families nurture recognises, written here in the style of the templates the
# models carry (Qwen2's default system message, Qwen3's <think> blocks, Llama 3 and 3.1), and two it
# must refuse. Each is rendered by transformers' apply_chat_template with a tokenizer of tokenizers/.
CHAT_TEMPLATES = {
    "chatml": ("qwen2", "chatml", CHATML),
    "chatml_default_system": ("qwen2", "chatml", (
        r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        r"{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        r"{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
        r"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")),
    "qwen3": ("qwen2", "qwen3", (
        r"{%- set ns = namespace(last_user=messages|length - 1) -%}"
        r"{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
        r"{%- endfor -%}"
        r"{%- for m in messages -%}{%- set text = m['content'] -%}"
        r"{%- if m['role'] == 'assistant' -%}{%- set thought = '' -%}"
        r"{%- if '</think>' in text -%}"
        r"{%- set thought = text.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') -%}"
        r"{%- set text = text.split('</think>')[-1].lstrip('\n') -%}{%- endif -%}"
        r"{%- if loop.index0 > ns.last_user and (loop.last or thought) -%}"
        r"{{- '<|im_start|>assistant\n<think>\n' + thought.strip('\n') + '\n</think>\n\n' + text.lstrip('\n') -}}"
        r"{%- else -%}{{- '<|im_start|>assistant\n' + text -}}{%- endif -%}{{- '<|im_end|>\n' -}}"
        r"{%- else -%}{{- '<|im_start|>' + m['role'] + '\n' + text + '<|im_end|>\n' -}}{%- endif -%}{%- endfor -%}"
        r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")),
    "llama3": ("llama3", "llama3", (
        r"{% for message in messages %}{% set turn = '<|start_header_id|>' + message['role'] + "
        r"'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}"
        r"{% if loop.first %}{{ bos_token + turn }}{% else %}{{ turn }}{% endif %}{% endfor %}"
        r"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")),
    "llama3.1": ("llama3", "llama3.1", (
        r"{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = " + '"26 Jul 2024"' +
        r" %}{%- endif %}"
        r"{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
        r"{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
        r"{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}{{- 'Cutting Knowledge Date: December 2023\n' }}"
        r"{{- 'Today Date: ' + date_string + '\n\n' }}{{- system_message }}{{- '<|eot_id|>' }}"
        r"{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
        r"message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
        r"{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}")),
    "inst": ("llama3", None, (
        r"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
        r"{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}"
        r"{% endfor %}")),
    "unknown": ("qwen2", None, r"{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"),
}

CHAT_CONVERSATIONS = CONVERSATIONS[:2] + [
    [{"role": "system", "content": "  Answer briefly.\n"}, {"role": "user", "content": " What is 2 + 2?\n\n"},
     {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"},
     {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "<think>Three twice.</think>6"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\ngreet\n</think>\n\nHello!"},
     {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}],
]


def chat_template_fixtures():
    """chat_templates/renderings.json: per template, its Jinja, the tokenizer it goes with and its
    tokenizer_config.json, the family nurture must recognise (null: refuse), and the ids
    apply_chat_template(tokenize=True) gives for each conversation, with and without the generation
    prompt."""
    T = transformers
    specials = {"qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}}
    out = {"templates": []}
    for name, (tokenizer_name, family, jinja) in CHAT_TEMPLATES.items():
        config = specials[tokenizer_name]
        entry = {"name": name, "tokenizer": tokenizer_name, "tokenizer_config": config, "family": family,
                 "jinja": jinja, "renderings": []}
        if family is not None:
            tokenizer = T.PreTrainedTokenizerFast(
                tokenizer_file=os.path.join(OUT, "tokenizers", tokenizer_name, "tokenizer.json"), **config)
            tokenizer.chat_template = jinja
            for messages in CHAT_CONVERSATIONS:
                for generation_prompt in (False, True):
                    if generation_prompt:
                        messages = messages[:max(i for i, m in enumerate(messages) if m["role"] == "user") + 1]
                    ids = tokenizer.apply_chat_template(messages, tokenize=True,
                                                        add_generation_prompt=generation_prompt, return_dict=False)
                    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                                         add_generation_prompt=generation_prompt)
                    entry["renderings"].append({"messages": messages, "add_generation_prompt": generation_prompt,
                                                "ids": list(ids), "text": text})
        out["templates"].append(entry)
    os.makedirs(os.path.join(OUT, "chat_templates"), exist_ok=True)
    with open(os.path.join(OUT, "chat_templates", "renderings.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


PARTS = {"safetensors": safetensors_fixture, "models": model_fixtures, "chat_model": chat_model_fixture,
         "chat_templates": chat_template_fixtures}

if __name__ == "__main__":
    # All parts, or those named: make_fixtures.py chat_templates
    for part in sys.argv[1:] or list(PARTS):
        PARTS[part]()
    print("[hf] wrote", OUT, "(" + ", ".join(sys.argv[1:] or PARTS) + ")")
