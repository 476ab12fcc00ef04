"""lightft.translation: generated parallel data, the encoder-decoder Transformer, decoding and scores."""

from __future__ import annotations

import math

import pytest
import torch

import lightft
from lightft.translation import (
    CHINESE_CHARACTERS,
    ENGLISH_WORDS,
    MAX_NUMBER,
    SOURCE_VOCAB,
    TARGET_VOCAB,
    MultiHeadCrossAttention,
    TranslationPair,
    Translator,
    TranslatorConfig,
    Vocabulary,
    bleu,
    english_tokens,
    evaluate_translator,
    exact_match,
    hub_translate,
    make_translation_splits,
    number_to_chinese,
    number_to_english,
    train_translator,
    translate,
)

# ---------------------------------------------------------------------------------------------------- data

CASES = [
    (0, "zero", "零"),
    (7, "seven", "七"),
    (10, "ten", "十"),
    (15, "fifteen", "十五"),
    (21, "twenty-one", "二十一"),
    (105, "one hundred five", "一百零五"),
    (110, "one hundred ten", "一百一十"),
    (1010, "one thousand ten", "一千零一十"),
    (10005, "ten thousand five", "一万零五"),
    (12305, "twelve thousand three hundred five", "一万二千三百零五"),
    (100000, "one hundred thousand", "十万"),
    (100100, "one hundred thousand one hundred", "十万零一百"),
    (150000, "one hundred fifty thousand", "十五万"),
    (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine", "九十九万九千九百九十九"),
    (1200000, "one million two hundred thousand", "一百二十万"),
    (MAX_NUMBER, "ninety-nine million nine hundred ninety-nine thousand nine hundred ninety-nine",
     "九千九百九十九万九千九百九十九"),
]


@pytest.mark.parametrize("n, english, chinese", CASES)
def test_number_writers_match_hand_written_values(n, english, chinese):
    assert number_to_english(n) == english
    assert number_to_chinese(n) == chinese


def test_chinese_reads_back_to_the_number():
    """An independent reader of the Chinese numerals recovers every number: the writer is consistent."""
    digit = {c: i for i, c in enumerate("零一二三四五六七八九")}

    def read(text: str) -> int:
        total = section = current = 0
        for ch in text:
            if ch in digit:
                current = digit[ch]
            elif ch == "万":
                total, section, current = (section + current) * 10_000, 0, 0
            else:
                section += (current or 1) * {"十": 10, "百": 100, "千": 1000}[ch]
                current = 0
        return total + section + current

    for n in list(range(0, 2100)) + list(range(9_990, 110_200, 37)) + [10_000_000, 10_000_001, 10_010_010]:
        assert read(number_to_chinese(n)) == n, n


def test_tokenization_round_trips_and_vocabularies_cover_every_number():
    for n in range(0, 1_000_000, 997):
        text = number_to_english(n)
        tokens = english_tokens(text)
        assert " ".join(tokens).replace(" - ", "-") == text
        ids = SOURCE_VOCAB.encode(tokens)
        assert ids[-1] == Vocabulary.EOS and SOURCE_VOCAB.decode(ids) == tokens
        target = TARGET_VOCAB.encode(list(number_to_chinese(n)), bos=True)
        assert target[0] == Vocabulary.BOS and "".join(TARGET_VOCAB.decode(target)) == number_to_chinese(n)
    assert english_tokens("Twenty-One") == ["twenty", "-", "one"]
    assert len(SOURCE_VOCAB) == 3 + len(ENGLISH_WORDS) and len(TARGET_VOCAB) == 3 + len(CHINESE_CHARACTERS)


def test_splits_are_deterministic_disjoint_and_correct():
    a = make_translation_splits(300, 50, 100, seed=3)
    b = make_translation_splits(300, 50, 100, seed=3)
    c = make_translation_splits(300, 50, 100, seed=4)
    assert a == b and a != c
    assert [len(a[s]) for s in ("train", "validation", "test")] == [300, 50, 100]
    numbers = [set(p.number for p in a[s]) for s in ("train", "validation", "test")]
    assert sum(map(len, numbers)) == 450  # distinct inside each split
    assert not (numbers[0] & numbers[1] or numbers[0] & numbers[2] or numbers[1] & numbers[2])
    for pair in a["test"]:
        assert pair == TranslationPair(pair.number, number_to_english(pair.number), number_to_chinese(pair.number))
        assert 1 <= pair.number < 10**6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
        number_to_english(-1)
    with pytest.raises(ValueError, match="from 0 to 99,999,999"):
        number_to_chinese(MAX_NUMBER + 1)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got 3.0"):
        number_to_chinese(3.0)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got True"):
        number_to_english(True)
    with pytest.raises(ValueError, match="unknown English token 'dozen'"):
        SOURCE_VOCAB.encode(english_tokens("one dozen"))
    with pytest.raises(ValueError, match="distinct numbers asked for"):
        make_translation_splits(100, 0, 0, max_digits=1)
    with pytest.raises(ValueError, match="train must be"):
        make_translation_splits(-5)
    with pytest.raises(ValueError, match="divisible"):
        TranslatorConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="config must be one of 'tiny', 'small'; got 'huge'"):
        train_translator([("one", "一")], "huge")
    with pytest.raises(TypeError, match="pairs"):
        train_translator("one", "tiny")
    with pytest.raises(TypeError, match="list of English strings"):
        translate(Translator(TranslatorConfig(d_model=8, num_heads=2, d_ff=8)), "one")
    with pytest.raises(TypeError, match="Translator"):
        translate(object(), ["one"])


# ---------------------------------------------------------------------------------------------------- model

def _tiny(**kw) -> Translator:
    torch.manual_seed(0)
    return Translator(TranslatorConfig(d_model=16, num_heads=2, encoder_layers=1, decoder_layers=2, d_ff=32,
                                       dropout=0.0, **kw)).eval()


def test_cross_attention_is_the_formula_on_the_decoder_queries_and_encoder_keys():
    torch.manual_seed(0)
    attn = MultiHeadCrossAttention(8, 2)
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out, weights = attn(x, memory, lightft.padding_mask(mask))
    assert out.shape == (2, 3, 8) and weights.shape == (2, 2, 3, 5)
    assert torch.all(weights[0, :, :, 3:] == 0)  # padded source positions get no weight
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3))
    # by hand for head 0 of the second example
    q = attn.query(x)[1, :, :4]
    k = attn.key(memory)[1, :, :4]
    expected = torch.softmax(q @ k.T / 2.0, dim=-1)
    torch.testing.assert_close(weights[1, 0], expected)
    with pytest.raises(ValueError, match="memory must have shape"):
        attn(x, torch.randn(2, 5, 7))


def test_decoder_cannot_see_the_future():
    """Changing a later target token leaves the logits of every earlier position unchanged."""
    model = _tiny()
    source = torch.tensor([SOURCE_VOCAB.encode(english_tokens("twelve thousand three hundred five"))])
    target = torch.tensor([TARGET_VOCAB.encode(list("一万二千三百零五"), bos=True)[:-1]])
    logits = model(source, target)
    for t in range(1, target.shape[1]):
        changed = target.clone()
        changed[0, t] = TARGET_VOCAB.stoi["九"] if target[0, t] != TARGET_VOCAB.stoi["九"] else TARGET_VOCAB.stoi["八"]
        other = model(source, changed)
        torch.testing.assert_close(other[0, :t], logits[0, :t])  # the past is untouched
        assert not torch.allclose(other[0, t:], logits[0, t:])  # the changed position and later ones do move


def test_source_padding_does_not_change_the_output():
    model = _tiny()
    source = SOURCE_VOCAB.encode(english_tokens("forty-two"))
    target = torch.tensor([TARGET_VOCAB.encode(list("四十二"), bos=True)[:-1]])
    alone = model(torch.tensor([source]), target)
    padded = model(torch.tensor([source + [Vocabulary.PAD] * 4]), target)
    torch.testing.assert_close(alone, padded)


def test_parameter_count_matches_the_architecture():
    c = TranslatorConfig(d_model=16, num_heads=2, encoder_layers=1, decoder_layers=2, d_ff=32)
    model = Translator(c)
    d, f, vs, vt, L = 16, 32, len(SOURCE_VOCAB), len(TARGET_VOCAB), c.max_length
    attention = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    norm = 2 * d
    expected = (vs * d + vt * d + 2 * L * d  # embeddings (output layer tied to the target embedding)
                + 1 * (attention + ffn + 2 * norm) + 2 * (2 * attention + ffn + 3 * norm) + 2 * norm)
    assert lightft.count_parameters(model) == expected


def test_tiny_model_overfits_a_handful_of_pairs_and_training_is_deterministic():
    pairs = [TranslationPair(n, number_to_english(n), number_to_chinese(n)) for n in (3, 40, 512, 7005, 18000, 260034)]
    config = TranslatorConfig(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=64, dropout=0.0)
    run = train_translator(pairs, config, epochs=150, batch_size=6, learning_rate=1e-2, label_smoothing=0.0, seed=1)
    assert run.history[-1]["loss"] < 0.05 < run.history[0]["loss"]
    assert translate(run, [p.english for p in pairs]) == [p.chinese for p in pairs]
    assert run.parameters == lightft.count_parameters(run.model) and run.steps == 150
    again = train_translator(pairs, config, epochs=5, batch_size=6, learning_rate=1e-2, seed=1)
    twice = train_translator(pairs, config, epochs=5, batch_size=6, learning_rate=1e-2, seed=1)
    other = train_translator(pairs, config, epochs=5, batch_size=6, learning_rate=1e-2, seed=2)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in twice.history]
    for a, b in zip(again.model.parameters(), twice.model.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(again.model.parameters(), other.model.parameters()))
    scores = evaluate_translator(run, pairs)
    assert scores["exact_match"] == 1.0 and scores["bleu"] == pytest.approx(100.0)
    translations, weights = translate(run, ["forty"], return_attention=True)
    assert translations == ["四十"] and weights[0].shape == (2, 3, 2)  # heads, 2 chars + </s>, 1 word + </s>
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 3))


def test_greedy_decoding_stops_at_max_new_tokens():
    model = _tiny()
    out = translate(model, ["one", "two hundred"], max_new_tokens=3)
    assert len(out) == 2 and all(len(t) <= 3 for t in out)
    assert translate(model, []) == []


# ---------------------------------------------------------------------------------------------------- scores

def test_exact_match_by_hand():
    assert exact_match(["一", "二十", "三"], ["一", "二十", "四"]) == pytest.approx(2 / 3)
    assert exact_match([" 五 "], ["五"]) == 1.0


def test_bleu_matches_a_hand_computed_value():
    # one wrong character of five: n-gram precisions 4/5, 3/4, 2/3, 1/2; lengths equal, so no brevity penalty
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu(["一百二十三"], ["一百二十四"]) == pytest.approx(expected, abs=1e-6)
    assert bleu(["一百二十三"], ["一百二十三"]) == pytest.approx(100.0)
    # a hypothesis shorter than its reference pays the brevity penalty exp(1 - r/c)
    short = bleu(["一百二十", "三千"], ["一百二十五", "三千"])
    assert short == pytest.approx(100 * math.exp(1 - 7 / 6), abs=1e-6)  # every n-gram of the output is right


def test_score_inputs_are_checked():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["一", "二"], ["一"])
    with pytest.raises(TypeError, match="list of strings"):
        exact_match("一", "一")
    with pytest.raises(ValueError, match="no sentences"):
        exact_match([], [])


def test_hub_translate_refuses_offline():
    with pytest.raises(lightft.HubUnreachableError, match="cannot be reached"):
        hub_translate(["one hundred"])
