"""A tiny random-weight Hugging Face causal LM, built offline (the Hub is never asked).

:func:`build_tiny_causal_lm` writes a folder as ``save_pretrained`` writes one: ``config.json``
and ``model.safetensors`` of a Llama with a few thousand parameters (random weights, fixed
seed), and a byte-level BPE tokenizer trained on the spot with the ``tokenizers`` library on a
few hundred words, wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template. It is a
real model folder for ``model.source: transformers``: MLflow's transformers flavor logs it and
its scoring server loads and runs it. What it writes is nonsense, deterministically (greedy).

Needs the ``transformers`` extra (torch, transformers); imported inside the function.
"""

from __future__ import annotations

from pathlib import Path

#: ChatML, as SmolLM2 and Qwen write it: what ``apply_chat_template`` renders for a chat request.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_TEXT = (
    "the a an and or but if then so because of to in on at by for with from as is are was were be been "
    "model models serve served serving endpoint endpoints request requests answer answers token tokens "
    "chat message messages user assistant system prompt prompts reply replies question questions data "
    "table tables notebook notebooks register registered version versions alias champion challenger "
    "deploy deployed deployment workspace local remote server servers client clients latency throughput "
    "metric metrics evaluate evaluation score scores judge test tests pass fail error errors retry "
    "time second seconds minute minutes hour day week year number numbers one two three four five six "
    "seven eight nine ten hundred thousand small large tiny big fast slow good bad new old first last "
    "cat dog bird fish tree river mountain city country house road car train ship plane sun moon star "
    "red green blue yellow black white light dark warm cold water fire earth air stone wood metal glass "
    "write read speak listen think know learn teach make build run walk open close start stop give take "
    "what when where why how who which this that these those here there now today tomorrow yesterday"
)


def _corpus() -> list[str]:
    """Sentences over the words of :data:`_TEXT` (a few hundred, each several times)."""
    words = _TEXT.split()
    n = len(words)
    return [" ".join(words[(i * k) % n] for k in range(1, 13)) + "." for i in range(1, 4 * n)]


def build_tiny_causal_lm(
    folder: Path,
    *,
    chat_template: str | None = CHAT_TEMPLATE,
    vocab_size: int = 512,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    context_length: int = 512,
    seed: int = 0,
    initializer_range: float = 1.0,
) -> Path:
    """Write a tiny Llama (random weights, ``seed``) and its trained tokenizer into ``folder``.

    ``chat_template=None`` leaves the tokenizer without one (a folder ``model.source:
    transformers`` must refuse). A few hundred KB at the default sizes. ``initializer_range``: the
    weights' std; Llama's 0.02 makes a tiny random model repeat one token, 1.0 makes it babble.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=context_length,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)

    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return folder
