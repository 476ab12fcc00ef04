"""lightft.llm on a tiny random Llama (2 layers, hidden 64) built from a config, plus one real test.

The tiny model uses the embedded MiniLM tokenizer with a minimal chat template, so no test here needs
the 98 MB GGUF file except the one marked ``real`` (the embedded SmolLM2 answers a question).
"""

from __future__ import annotations

import pytest
import torch

import lightft
from lightft import llm

TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def save_tiny_llama(folder, seed: int = 0):
    """A tiny LlamaForCausalLM (2 layers, hidden 64, 4 heads, 2 key/value heads) + tokenizer, saved."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = lightft.load_tokenizer("minilm-l6")
    tokenizer.chat_template = TEMPLATE
    tokenizer.eos_token = "[SEP]"
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.cls_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return llm.load_llm(save_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


def test_load_llm_folder(tiny):
    model, tokenizer = tiny
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_chat_prompt_uses_template(tiny):
    _, tokenizer = tiny
    prompt = llm.chat_prompt(tokenizer, "hello there", system="be brief")
    assert prompt == "system: be brief\nuser: hello there\nassistant:"


def test_generate_greedy_cache_and_batch(tiny):
    model, tokenizer = tiny
    prompts = ["the film is", "a long and very boring story about"]
    with_cache = llm.generate(model, tokenizer, prompts, max_new_tokens=6)
    without = llm.generate(model, tokenizer, prompts, max_new_tokens=6, use_cache=False)
    assert with_cache == without and len(with_cache) == 2
    assert llm.generate(model, tokenizer, prompts[1], max_new_tokens=6) == with_cache[1]  # padding-safe
    a = llm.generate(model, tokenizer, prompts[0], do_sample=True, temperature=1.5, seed=3, max_new_tokens=6)
    b = llm.generate(model, tokenizer, prompts[0], do_sample=True, temperature=1.5, seed=3, max_new_tokens=6)
    assert isinstance(a, str) and a == b
    assert isinstance(llm.chat(model, tokenizer, "hi", max_new_tokens=3), str)


def test_generate_in_batches_equals_one_batch(tiny):
    model, tokenizer = tiny
    prompts = ["a", "the film is long", "ok then", "a much longer and rather dull review of it", "b"]
    whole = llm.generate(model, tokenizer, prompts, max_new_tokens=4)
    assert llm.generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2) == whole
    with pytest.raises(ValueError, match="batch_size"):
        llm.generate(model, tokenizer, prompts, batch_size=0)


def test_number_prompt_and_task_words(tiny):
    import datasets

    _, tokenizer = tiny
    prompt = llm.number_prompt(tokenizer, "twelve thousand three hundred five")
    assert llm.NUMBER_INSTRUCTION in prompt and prompt.endswith("assistant:") and llm.NUMBER_SYSTEM in prompt

    def named(names):
        features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
        return datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["x"], "label": [0]}, features=features))

    assert llm.task_words(named(["Negative", "Neutral", "Positive"])) == ("negative", "neutral", "positive")
    assert llm.task_words(named(["0", "1"])) == llm.LABEL_WORDS
    with pytest.raises(ValueError, match="one-word names"):
        llm.task_words(named(["0", "1", "2"]))
    assert llm.task_words(lightft.load_dataset("tweets")) == ("negative", "neutral", "positive")


def test_run_sft_on_three_classes(tmp_path):
    folder = save_tiny_llama(tmp_path / "model")
    result = llm.run_sft(str(folder), "tweets", tmp_path / "run", train_limit=8, eval_limit=6, batch_size=4, r=2,
                         target_modules=["q_proj", "v_proj"])
    assert result["label_words"] == ["negative", "neutral", "positive"]
    assert result["test_examples"] == 6 and 0 <= result["test_accuracy"] <= 1
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_label_word_scores_batched_equal_single(tiny):
    model, tokenizer = tiny
    prompts = [llm.sentiment_prompt(tokenizer, t) for t in ["good", "a much longer and rather dull review", "ok"]]
    batched = llm.label_word_scores(model, tokenizer, prompts, batch_size=2)
    single = torch.cat([llm.label_word_scores(model, tokenizer, [p]) for p in prompts])
    assert batched.shape == (3, 2) and torch.allclose(batched, single, atol=1e-4)
    assert llm.classify_with_llm(model, tokenizer, ["good"], examples=[("bad", 0)]) in ([0], [1])


def test_sft_examples_mask_prompt_and_collate(tiny):
    _, tokenizer = tiny
    examples = llm.sft_examples(tokenizer, ["question one", "q"], ["positive", "negative"])
    first = examples[0]
    answer = tokenizer("positive" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert first["labels"][-len(answer):] == answer == first["input_ids"][-len(answer):]
    assert set(first["labels"][:-len(answer)]) == {-100}
    batch = llm.CompletionCollator(tokenizer.pad_token_id)(examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].sum() == len(examples[1]["input_ids"])
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == -100).all()


def test_train_sft_lowers_loss(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    prompts = [llm.sentiment_prompt(tokenizer, t) for t in ["great", "awful", "fine", "bad"] * 2]
    examples = llm.sft_examples(tokenizer, prompts, ["positive", "negative"] * 4)
    result = llm.train_sft(peft_model, tokenizer, examples, tmp_path, epochs=3, batch_size=8, learning_rate=1e-2, warmup=0)
    assert result.losses[-1] < result.losses[0] and result.examples_per_second > 0 and result.peak_memory > 0
    peft_model.unload()


def test_sentiment_prompt_lists_the_words_and_keeps_the_two_class_question(tiny):
    _, tokenizer = tiny
    assert "Review: fine\nPositive or negative?" in llm.sentiment_prompt(tokenizer, "fine")
    three = llm.sentiment_prompt(tokenizer, "ok", [("meh", 1)], words=("negative", "neutral", "positive"), item="Tweet")
    assert "Tweet: meh\nSentiment: neutral" in three and three.rstrip().endswith(
        "Tweet: ok\nPositive, neutral or negative?\nassistant:")


def test_classification_head_learns_and_predicts_padding_safe(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding

    model, tokenizer = llm.load_llm(save_tiny_llama(tmp_path / "tiny"), num_labels=3)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    texts = ["good", "a much longer and rather dull review of a film", "ok"]
    batched = llm.classify_with_head(model, tokenizer, texts, batch_size=3)
    assert batched == [llm.classify_with_head(model, tokenizer, [t])[0] for t in texts]   # left padding is safe
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"))
    examples = [{**tokenizer(t), "labels": y} for t, y in zip(["great", "awful", "fine", "bad"] * 2, [2, 0, 1, 0] * 2)]
    result = llm.train_sft(peft_model, tokenizer, examples, tmp_path / "run", epochs=4, batch_size=8,
                           learning_rate=1e-2, warmup=0, collator=DataCollatorWithPadding(tokenizer))
    assert result.losses[-1] < result.losses[0]
    with pytest.raises(ValueError, match="num_labels"):
        llm.load_llm(tmp_path / "tiny", num_labels=1)


@pytest.mark.parametrize("call, error", [
    (lambda m, t: llm.load_llm("x", quantize="int3"), ValueError),
    (lambda m, t: llm.generate(m, t, [], max_new_tokens=2), ValueError),
    (lambda m, t: llm.generate(m, t, "x", max_new_tokens=0), ValueError),
    (lambda m, t: llm.generate(m, t, "x", top_p=1.5), ValueError),
    (lambda m, t: llm.sft_examples(t, ["a", "b"], ["c"]), ValueError),
    (lambda m, t: llm.label_word_ids(t, ["good", "good"]), ValueError),
    (lambda m, t: llm.embedded_gguf_path("gpt-5"), ValueError),
])
def test_bad_input_raises(tiny, call, error):
    with pytest.raises(error):
        call(*tiny)


def test_embedded_gguf_is_installed():
    path = llm.embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 90e6


@pytest.mark.real
def test_real_smollm2_answers():
    model, tokenizer = llm.load_llm("smollm2-135m-instruct")
    assert model.num_parameters() == 134_515_008
    assert "Paris" in llm.chat(model, tokenizer, "What is the capital of France?", max_new_tokens=12)


def test_cli_generate_and_bad_input(tiny, tmp_path, capsys):
    from lightft.__main__ import main

    folder = save_tiny_llama(tmp_path / "model")
    assert main(["generate", "--model", str(folder), "--max-new-tokens", "2", "hello"]) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(folder), "--adapter", str(tmp_path / "none"), "hi"]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["sft", "--output", str(tmp_path / "busy")]) == 2
    assert main(["sft", "--output", str(tmp_path / "empty"), "--resume"]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--output", str(tmp_path / "x"), "--rank", "0"])
    assert exit_info.value.code == 2
