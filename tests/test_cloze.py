"""Zero-shot cloze scoring: continuation log-likelihoods of a causal LM and the per-question
predictive built from them (lm-evaluation-harness conventions)."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_decoder

from bayeshead.backbones.cloze import bos_prefix, continuation_log_likelihoods
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.errors import UserInputError
from bayeshead.heads.option_scoring import OptionPredictive
from bayeshead.tasks.cloze import cloze_pairs, cloze_predictive
from bayeshead.tasks.prompts import BOOLQ_PASSAGE_CHARS
from bayeshead.tasks.records import QARecord, letters

CONTEXTS = [
    "Question: what is the capital of France?\nAnswer:",
    "Hi",
    "Question: which of the following animals sleeps most of the day in a warm and quiet place?\nAnswer:",
    "The trophy doesn't fit into the suitcase because the trophy",
    "",
]
CONTINUATIONS = [" Paris", " a small grey cat that sleeps on the mat", " dog", " is too large.", " hello there"]


@pytest.fixture(scope="module")
def net(offline_tokenizer):
    return tiny_decoder("llama", offline_tokenizer.vocab_size, seed=3)


@pytest.fixture
def backbone(net, offline_tokenizer):
    return HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=32)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def _brute_force(net, tokens: list[int], start: int) -> float:
    """Σ_{j >= start} log softmax(logits[j - 1])[tokens[j]], one unpadded sequence at a time."""
    logits = net(input_ids=torch.tensor([tokens])).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    return sum(float(log_probs[j - 1, tokens[j]]) for j in range(start, len(tokens)))


def _reference(net, tokenizer, context: str, continuation: str) -> float:
    """What an lm-eval style scorer gives for one pair (BERT-style tokenizer: [CLS] is the BOS)."""
    prefix = [tokenizer.cls_token_id]
    ctx = prefix + _ids(tokenizer, context)
    return _brute_force(net, ctx + _ids(tokenizer, continuation), len(ctx))


def _record(question, choices, answer=0, passage=None, id="q"):
    return QARecord(id=id, question=question, choices=tuple(choices), labels=letters(len(choices)),
                    answer=answer, passage=passage)


# -- (a) batched log-likelihoods == one-at-a-time brute force ------------------------------------
def test_bos_prefix_is_what_the_tokenizer_prepends(offline_tokenizer):
    assert bos_prefix(offline_tokenizer) == [offline_tokenizer.cls_token_id]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batched_log_likelihoods_match_brute_force(backbone, net, offline_tokenizer, batch_size):
    ll, n = continuation_log_likelihoods(backbone, CONTEXTS, CONTINUATIONS, batch_size=batch_size)
    assert ll.dtype == torch.float64 and n.dtype == torch.int64 and ll.shape == n.shape == (len(CONTEXTS),)
    expected = torch.tensor(
        [_reference(net, offline_tokenizer, c, x) for c, x in zip(CONTEXTS, CONTINUATIONS, strict=True)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(ll, expected, atol=1e-5, rtol=0)
    assert bool((ll < 0).all())


def test_result_does_not_depend_on_batch_neighbours(backbone):
    """A pair alone and a pair padded next to much longer ones give the same number."""
    alone, _ = continuation_log_likelihoods(backbone, CONTEXTS[1:2], CONTINUATIONS[1:2])
    mixed, _ = continuation_log_likelihoods(backbone, CONTEXTS, CONTINUATIONS, batch_size=len(CONTEXTS))
    torch.testing.assert_close(mixed[1], alone[0], atol=1e-5, rtol=0)


def test_without_bos_the_context_is_not_prefixed_and_empty_context_uses_a_prefix_token(net, offline_tokenizer):
    class NoSpecialTokens:
        """The offline tokenizer, never adding special tokens (like GPT-2's); BOS id 7."""

        pad_token, pad_token_id, eos_token, bos_token_id = offline_tokenizer.pad_token, 0, None, 7

        def __call__(self, text, add_special_tokens=True, **kwargs):
            return offline_tokenizer(text, add_special_tokens=False, **kwargs)

    tokenizer = NoSpecialTokens()
    assert bos_prefix(tokenizer) == []
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=32)
    ll, _ = continuation_log_likelihoods(backbone, ["Hello there", ""], [" Paris", " Paris"])
    ctx = _ids(offline_tokenizer, "Hello there")
    cont = _ids(offline_tokenizer, " Paris")
    assert ll[0].item() == pytest.approx(_brute_force(net, ctx + cont, len(ctx)), abs=1e-5)
    assert ll[1].item() == pytest.approx(_brute_force(net, [7] + cont, 1), abs=1e-5)


# -- (b) token counts ---------------------------------------------------------------------------
def test_token_counts_are_those_of_the_continuation(backbone, offline_tokenizer):
    _, n = continuation_log_likelihoods(backbone, CONTEXTS, CONTINUATIONS, batch_size=2)
    assert n.tolist() == [len(_ids(offline_tokenizer, x)) for x in CONTINUATIONS]
    assert n[0] == 1 and n[2] == 1 and n[1] == 9  # " paris", " dog"; "a small grey cat that sleeps on the mat"


# -- (c) left truncation --------------------------------------------------------------------------
def test_long_context_is_cut_from_the_left_and_the_continuation_kept(backbone, net, offline_tokenizer):
    context = " ".join(f"word{i}" if i % 3 else "cat" for i in range(40))
    continuation = " the dog sat on the mat"
    ctx_ids, cont_ids = _ids(offline_tokenizer, context), _ids(offline_tokenizer, continuation)
    assert 1 + len(ctx_ids) + len(cont_ids) - 1 > backbone.max_length  # it has to be cut
    seen = []
    hook = net.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]),
                                         with_kwargs=True)
    try:
        ll, n = continuation_log_likelihoods(backbone, [context, "Hi"], [continuation, " there"])
    finally:
        hook.remove()
    assert max(seen) == backbone.max_length  # the model reads exactly max_length tokens
    assert n[0] == len(cont_ids)
    keep = backbone.max_length + 1 - 1 - len(cont_ids)  # input = [CLS] + kept context + continuation[:-1]
    tokens = [offline_tokenizer.cls_token_id] + ctx_ids[-keep:] + cont_ids
    assert ll[0].item() == pytest.approx(_brute_force(net, tokens, 1 + keep), abs=1e-5)
    # the right end of the context was kept, not the left one
    wrong = [offline_tokenizer.cls_token_id] + ctx_ids[:keep] + cont_ids
    assert abs(ll[0].item() - _brute_force(net, wrong, 1 + keep)) > 1e-4  # 50x the tolerance above


def test_a_continuation_longer_than_max_length_is_refused(net, offline_tokenizer):
    backbone = HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=4)
    with pytest.raises(ValueError, match="never truncated.*max_length"):
        continuation_log_likelihoods(backbone, ["Hi"], [" one two three four five six"])


# -- (d) cloze pairs per family -----------------------------------------------------------------
def test_multiple_choice_pairs():
    record = _record("Which is a mammal?", ["cat", "trout", "newt"])
    for task in ("arc_easy", "arc_challenge", "obqa", "mmlu_college_physics"):
        assert cloze_pairs(task, record) == [
            ("Question: Which is a mammal?\nAnswer:", " cat"),
            ("Question: Which is a mammal?\nAnswer:", " trout"),
            ("Question: Which is a mammal?\nAnswer:", " newt"),
        ]


def test_boolq_pairs_cut_the_passage():
    passage = "x" * (BOOLQ_PASSAGE_CHARS + 50)
    pairs = cloze_pairs("boolq", _record("is it wet", ["true", "false"], passage=passage))
    context = f"Passage: {'x' * BOOLQ_PASSAGE_CHARS}\nQuestion: is it wet\nAnswer:"
    assert pairs == [(context, " true"), (context, " false")]
    with pytest.raises(UserInputError, match="passage"):
        cloze_pairs("boolq", _record("is it wet", ["true", "false"]))


@pytest.mark.parametrize("task", ["winogrande_s", "winogrande_m"])
def test_winogrande_partial_scoring_pairs(task):
    sentence = "The trophy doesn't fit into the suitcase because _ is too large."
    pairs = cloze_pairs(task, _record(sentence, ["the trophy", "the suitcase"]))
    assert pairs == [
        ("The trophy doesn't fit into the suitcase because the trophy", " is too large."),
        ("The trophy doesn't fit into the suitcase because the suitcase", " is too large."),
    ]
    possessive = cloze_pairs(task, _record("Sam liked _'s house.", ["Ann", "Bob"]))
    assert possessive == [("Sam liked Ann", "'s house."), ("Sam liked Bob", "'s house.")]


@pytest.mark.parametrize("sentence", ["No blank here.", "Two _ blanks _ here.", "Ends with a blank _", "Ends _  "])
def test_winogrande_needs_one_blank_with_text_after_it(sentence):
    with pytest.raises(UserInputError, match="blank"):
        cloze_pairs("winogrande_s", _record(sentence, ["a", "b"]))


def test_unknown_task_is_refused():
    with pytest.raises(UserInputError, match="unknown task 'nope'"):
        cloze_pairs("nope", _record("q", ["a", "b"]))


# -- (e) the predictive -----------------------------------------------------------------------------
RECORDS = [
    _record("Which is a mammal?", ["cat", "a small brown trout", "newt", "frog"], answer=0, id="q0"),
    _record("Is the sky blue?", ["yes", "no, it is green"], answer=0, id="q1"),
    _record("Where do cats sleep?", ["bed", "sea", "in the sky above the clouds", "fire"], answer=0, id="q2"),
]


@pytest.mark.parametrize("normalize", ["tokens", "none"])
def test_cloze_predictive_is_the_softmax_of_hand_computed_scores(backbone, net, offline_tokenizer, normalize):
    predictive = cloze_predictive(backbone, "arc_easy", RECORDS, normalize=normalize, batch_size=3)
    assert isinstance(predictive, OptionPredictive)
    assert predictive.counts.tolist() == [4, 2, 4]
    torch.testing.assert_close(predictive.question_sums(), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    for record, probs in zip(RECORDS, predictive.per_question(), strict=True):
        context = f"Question: {record.question}\nAnswer:"
        scores = []
        for option in record.choices:
            ll = _reference(net, offline_tokenizer, context, f" {option}")
            scores.append(ll / len(_ids(offline_tokenizer, f" {option}")) if normalize == "tokens" else ll)
        torch.testing.assert_close(probs, torch.softmax(torch.tensor(scores, dtype=torch.float64), 0),
                                   atol=1e-5, rtol=0)


def test_normalisation_tempers_winogrande_but_keeps_its_ranking(backbone, offline_tokenizer):
    by_tokens = cloze_predictive(backbone, "arc_easy", RECORDS, normalize="tokens")
    raw = cloze_predictive(backbone, "arc_easy", RECORDS, normalize="none")
    assert (by_tokens.probs - raw.probs).abs().max() > 1e-3
    # WinoGrande: one continuation per question, n tokens for every option, so "tokens" is "none"
    # at temperature n: same argmax, log-odds divided by n.
    wino = [_record("Sam gave _ the ball because she asked.", ["Ann", "the tall man"]),
            _record("The cup fell off _ onto the floor.", ["the table", "it"])]
    by_tokens = cloze_predictive(backbone, "winogrande_m", wino, normalize="tokens")
    raw = cloze_predictive(backbone, "winogrande_m", wino, normalize="none")
    assert torch.equal(by_tokens.argmax(), raw.argmax())
    for record, p_tok, p_raw in zip(wino, by_tokens.per_question(), raw.per_question(), strict=True):
        n = len(_ids(offline_tokenizer, record.question.split("_", 1)[1]))
        assert n > 1
        log_odds_tok, log_odds_raw = (p_tok[0] / p_tok[1]).log(), (p_raw[0] / p_raw[1]).log()
        assert log_odds_tok.item() == pytest.approx(log_odds_raw.item() / n, abs=1e-9)
        assert abs(log_odds_raw.item()) > 1e-3


def test_cloze_predictive_refuses_bad_arguments(backbone):
    with pytest.raises(ValueError, match="normalize must be one of"):
        cloze_predictive(backbone, "arc_easy", RECORDS, normalize="chars")  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="no questions"):
        cloze_predictive(backbone, "arc_easy", [])


# -- (f) errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("continuation", ["", "   "])
def test_empty_continuation_is_refused(backbone, continuation):
    with pytest.raises(ValueError, match="continuation 1 .* encodes to no tokens"):
        continuation_log_likelihoods(backbone, ["a", "b"], [" x", continuation])


def test_a_backbone_without_lm_head_is_refused(net, offline_tokenizer):
    encoder_like = HuggingFaceBackbone(net.model, offline_tokenizer, pooling="last_token")
    with pytest.raises(TypeError, match="LlamaModel"):
        continuation_log_likelihoods(encoder_like, ["a"], [" b"])
    with pytest.raises(TypeError, match="got LlamaForCausalLM"):
        continuation_log_likelihoods(net, ["a"], [" b"])


def test_mismatched_or_malformed_inputs_are_refused(backbone):
    with pytest.raises(ValueError, match="2 contexts but 1 continuations"):
        continuation_log_likelihoods(backbone, ["a", "b"], [" c"])
    with pytest.raises(TypeError, match="single str"):
        continuation_log_likelihoods(backbone, "a", [" c"])
    with pytest.raises(ValueError, match="batch_size"):
        continuation_log_likelihoods(backbone, ["a"], [" c"], batch_size=0)


def test_training_flags_are_restored(backbone, net):
    backbone.train()
    net.model.layers[0].eval()  # a mixed state must come back as it was
    flags = {name: m.training for name, m in backbone.named_modules()}
    seen = []
    hook = net.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    try:
        continuation_log_likelihoods(backbone, ["a"], [" b"])
    finally:
        hook.remove()
        after = {name: m.training for name, m in backbone.named_modules()}
        net.eval()
    assert seen == [False]
    assert after == flags
