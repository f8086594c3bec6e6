"""PoemConstraint driven by fake decode loops (random logits) and by shared.decoding."""
import random
from pathlib import Path

import pytest
import torch

from poetry.poems import repetition as rep
from poetry.poems import verse as v
from poetry.poems.repetition import Limits
from poetry.poems.rules import LineIndex, make_spec, parse_start, poem_rules
from shared.tokenizers import CharTokenizer

FIX = Path(__file__).parent / "fixtures" / "poems"
CORPUS = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼", "床前明月光", "疑是地上霜",
          "举头望明月", "低头思故乡", "朝辞白帝彩云间", "千里江陵一日还", "春眠不觉晓",
          "处处闻啼鸟", "夜来风雨声", "花落知多少"]
FORMS = list(v.FORMS)


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    chars = "".join(FIX.joinpath("chars.txt").read_text(encoding="utf-8").split())
    chars += "".join(CORPUS) + "春夏秋冬风花雪月"
    return CharTokenizer(list(dict.fromkeys(chars)) + ["，", "。"],
                         specials=["<wujue>", "<qijue>", "<wulv>", "<qilv>"])


@pytest.fixture(scope="module")
def index() -> LineIndex:
    return LineIndex(CORPUS)


def run(c, tok, rows, seed=0, bias=None, reorder=False):
    """A decode loop over the Constraint API: begin -> pick an allowed token -> step.
    `bias(step)` -> (V,) favours tokens (to steer toward corpus lines); `reorder` shuffles rows with
    replacement every step, as beam search does."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    R = len(rows)
    m = c.begin(rows)
    seqs, fin = [[] for _ in range(R)], torch.zeros(R, dtype=torch.bool)
    for step in range(100):
        if reorder and step % 3 == 1:
            index = torch.tensor([rng.randrange(R) for _ in range(R)])
            c.reorder(index)
            m, fin, seqs = m[index], fin[index], [list(seqs[i]) for i in index.tolist()]
        live = ~fin
        assert m[live].any(-1).all(), "a live row reached a dead end"
        specials = [tok.stoi[x] for x in tok.specials if x != "<eos>"]
        assert not m[live][:, specials].any()
        logits = torch.rand(R, tok.vocab_size, generator=g) + (0 if bias is None else bias(step))
        toks = logits.masked_fill(~m, -1.0).argmax(-1)
        toks = torch.where(fin, torch.full_like(toks, tok.pad_id), toks)
        for r, (t, done) in enumerate(zip(toks.tolist(), fin.tolist())):
            if not done:
                seqs[r].append(t)
        fin |= toks.eq(tok.eos_id)
        m = c.step(toks)
        if fin.all():
            break
    assert fin.all()
    return [tok.decode(s) for s in seqs]


def assert_valid(text, spec, index):
    f = v.FORMS[spec.form]
    assert text.endswith("。") and len(text) == f.lines * (f.length + 1), text
    assert all(text[k * (f.length + 1) + f.length] == ("，" if k % 2 == 0 else "。")
               for k in range(f.lines)), text
    lines = v.split_poem(text)
    assert v.check_poem(lines, spec.form, rhyme=spec.rhyme, tones=spec.tones,
                        acrostic=spec.acrostic) == [], text
    assert list(lines[:len(spec.start)]) == list(spec.start)
    assert len(set(lines)) == len(lines), text
    assert not any(x in index for x in lines[len(spec.start):]), text


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tones", [None, "strict"])
def test_random_decoding_always_valid(tok, index, form, tones):
    f = v.FORMS[form]
    heads = "春夏秋冬风花雪月"[:f.lines]
    start = "床前明月光" if f.length == 5 else "朝辞白帝彩云间，千里江陵一日还"
    specs = [make_spec(form, tones=tones, tokenizer=tok),
             make_spec(form, acrostic=heads, tones=tones, tokenizer=tok),
             make_spec(form, start=start, tones=tones, tokenizer=tok),
             make_spec(form, rhyme=False, tones=tones, tokenizer=tok),
             make_spec(form, acrostic=start[0] + heads[1:], start=start.split("，")[0],
                       tones=tones, tokenizer=tok)]
    c = poem_rules(tok, specs, index)
    rows = torch.arange(len(specs)).repeat_interleave(4)
    for seed in range(3):
        texts = run(c, tok, rows, seed=seed)
        for r, text in enumerate(texts):
            assert_valid(text, specs[int(rows[r])], index)
    assert c.rules[-1].relaxed == 0


def test_beam_reorder_keeps_rows_consistent(tok, index):
    specs = [make_spec(f, acrostic="春夏秋冬风花雪月"[:v.FORMS[f].lines], tones="strict")
             for f in FORMS]
    c = poem_rules(tok, specs, index)
    rows = torch.arange(len(specs)).repeat_interleave(4)
    for seed in range(3):
        texts = run(c, tok, rows, seed=seed, reorder=True)
        # reorder may move any row anywhere; each text must still be a valid poem of some spec
        for text in texts:
            assert any(v.check_poem(v.split_poem(text), s.form, tones="strict",
                                    acrostic=s.acrostic) == [] for s in specs), text


def test_novelty_blocks_corpus_and_repeated_lines(tok, index):
    # Steer every line toward a famous line: 白日依山尽 at each line.
    def bias(step):
        b = torch.zeros(tok.vocab_size)
        b[tok.stoi["白日依山尽，"[step % 6]]] = 10.0
        return b

    c = poem_rules(tok, [make_spec("wujue", rhyme=False)], index)
    lines = v.split_poem(run(c, tok, torch.tensor([0]), bias=bias)[0])
    assert lines[0].startswith("白日依山") and lines[0] != "白日依山尽"
    assert len(set(lines)) == 4                    # the favoured line would repeat otherwise
    # the user's own start line may be a corpus line
    c = poem_rules(tok, [make_spec("wujue", start="白日依山尽")], index)
    assert v.split_poem(run(c, tok, torch.tensor([0]), bias=bias)[0])[0] == "白日依山尽"


def test_first_line_rhyme_is_followed(tok, index):
    c = poem_rules(tok, [make_spec("wulv", start="床前明月光")], index)
    for seed in range(5):
        lines = v.split_poem(run(c, tok, torch.tensor([0]), seed=seed)[0])
        assert all("阳" in v.level_rhyme_groups(x[-1]) for x in lines[1::2]), lines


def test_relaxes_instead_of_dead_end(index):
    # Only oblique characters: rhyme is impossible, so it is relaxed, format is kept.
    tok = CharTokenizer(list("月雪木柳水，。"))
    c = poem_rules(tok, [make_spec("wujue", tones="strict")], index)
    text = run(c, tok, torch.tensor([0]))[0]
    assert len(v.split_poem(text)) == 4 and c.rules[-1].relaxed > 0
    # One character: lines must repeat, so the within-poem novelty rule gives way last.
    tok = CharTokenizer(list("山，。"))
    c = poem_rules(tok, [make_spec("qijue", rhyme=False)], index)
    assert run(c, tok, torch.tensor([0]))[0] == "山山山山山山山，山山山山山山山。" * 2
    # Rhyme allows only 天, which novelty bans along with a character rhyme had excluded:
    # counting must see the mask empty (a dead end) and relax, not trust a partial overlap.
    tok = CharTokenizer(list("天月，。"))
    c = poem_rules(tok, [make_spec("wujue", start="天天天天天")], LineIndex(["天天天天月"]))

    def bias(step):
        return torch.tensor([0, 0, 0, 0, 5.0, 0, 0, 0])     # always prefer 天

    assert run(c, tok, torch.tensor([0]), bias=bias)[0].startswith("天天天天天，天天天天")
    assert c.rules[-1].relaxed > 0


def test_finished_rows_and_unexpected_tokens(tok, index):
    c = poem_rules(tok, [make_spec("wujue")], index)
    m = c.begin(torch.tensor([0]))
    m = c.step(torch.tensor([tok.eos_id]))           # an early <eos> (e.g. from max_len logic)
    assert m[0].nonzero().flatten().tolist() == [tok.eos_id]
    m = c.step(torch.tensor([tok.pad_id]))           # pads after <eos> are ignored
    assert m[0].nonzero().flatten().tolist() == [tok.eos_id]


class _State:
    def __init__(self, n):
        self.n = n

    def select(self, index):
        return _State(len(index))


class RandomModel:
    """A stub of the Seq2Seq decoding interface: random logits (scale 4), seeded."""

    def __init__(self, vocab: int):
        self.vocab, self.g = vocab, torch.Generator().manual_seed(0)

    def eval(self):
        return self

    def encode(self, src, src_len):
        return _State(src.size(0))

    def decode_step(self, prev, state):
        return torch.randn(state.n, self.vocab, generator=self.g) * 4, state


def test_with_shared_decoding(tok, index):
    """Sampling and beam search from shared.decoding with a random stub model."""
    from shared import decoding

    specs = [make_spec(f, acrostic="春夏秋冬风花雪月"[:v.FORMS[f].lines]) for f in FORMS]
    src, src_len = decoding.pad_batch([[4], [5], [6], [7]])
    for strategy in ("sample", "beam"):
        cfg = decoding.GenerationConfig(strategy=strategy, max_len=80, seed=1, beam_size=3)
        out = decoding.generate(RandomModel(tok.vocab_size), src, src_len, cfg, bos_id=tok.bos_id,
                                eos_id=tok.eos_id, constraint=poem_rules(tok, specs, index))
        assert all(out.finished)
        for spec, ids in zip(specs, out.tokens):
            assert_valid(tok.decode(ids), spec, index)


def test_validation_messages(tok):
    assert parse_start("床前明月光，疑是地上霜。") == ("床前明月光", "疑是地上霜")
    assert parse_start(["床前明月光。", " 疑是地上霜"]) == ("床前明月光", "疑是地上霜")
    spec = make_spec("wujue", acrostic="床疑举低", start="床前明月光", tokenizer=tok)
    assert spec.start == ("床前明月光",) and spec.acrostic == "床疑举低"
    bad = [(dict(form="sonnet"), "unknown form"),
           (dict(form="wujue", acrostic="春夏秋"), "has 3 characters"),
           (dict(form="wujue", acrostic="春夏秋x"), "non-Chinese"),
           (dict(form="wujue", acrostic="春夏秋齉"), "does not know: 齉"),
           (dict(form="wujue", start="床前明月光光"), "has 6 characters"),
           (dict(form="qijue", start="床前明月光"), "lines have 7"),
           (dict(form="wujue", start="床前明月光，疑是地上霜，举头望明月，低头思故乡，床前明月光"),
            "start has 5 lines"),
           (dict(form="wujue", start="床前明月光", acrostic="春夏秋冬"), "acrostic head '春'"),
           (dict(form="wujue", tones="loose"), "tones must be")]
    for kwargs, msg in bad:
        with pytest.raises(ValueError, match=msg):
            make_spec(tokenizer=tok, **kwargs)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        poem_rules(tok, [make_spec("wujue", acrostic="春夏秋齉")])


def test_line_index(tmp_path):
    idx = LineIndex(CORPUS + ["白日依山晚"])
    assert sorted(idx.completions("白日依山")) == ["尽", "晚"]
    assert idx.completions("朝辞白帝彩云") == "间" and idx.completions("无此前缀") == ""
    assert "床前明月光" in idx and "床前明月" not in idx and len(idx) == len(CORPUS) + 1
    p = tmp_path / "lines.npz.xz"
    idx.save(p)
    back = LineIndex.load(p)
    assert "花落知多少" in back and (back.hashes == idx.hashes).all()
    assert sorted(back.completions("白日依山")) == ["尽", "晚"]
    with pytest.raises(FileNotFoundError, match="poetry.poems.data prepare"):
        LineIndex.load(tmp_path / "absent.npz")


LIMITS = Limits(cap={f: 2 for f in FORMS}, max_doubles={f: 1 for f in FORMS},
                doubled=frozenset("悠"), places={5: frozenset({0}), 7: frozenset({0, 2})})


@pytest.mark.parametrize("form", FORMS)
def test_repetition_limits(tok, index, form):
    # The model would write 秋 and 悠 everywhere and end every rhyming line on 光.
    def bias(step):
        b = torch.zeros(tok.vocab_size)
        b[[tok.stoi["秋"], tok.stoi["悠"]]] = 5.0
        b[tok.stoi["光"]] = 8.0
        return b

    specs = [make_spec(form, tokenizer=tok), make_spec(form, acrostic="秋" * v.FORMS[form].lines)]
    c = poem_rules(tok, specs, index, LIMITS)
    for seed in range(3):
        plain, acro = run(c, tok, torch.arange(2), seed=seed, bias=bias)
        for text, spec in ((plain, specs[0]), (acro, specs[1])):
            lines = v.split_poem(text)
            assert v.check_poem(lines, form, acrostic=spec.acrostic) == [], text
            assert not rep.repeats_rhyme(lines), text                  # 重韵
            ends = [x[-1] for x in lines[1::2]]
            assert len(set(ends)) == len(ends), text
            free = "".join(x[1:] if spec.acrostic else x for x in lines)
            assert max(free.count(ch) for ch in free) <= 2, text       # the heads win
            if spec.acrostic:                    # forced heads are reserved under the cap
                assert "秋" not in free, text
            pairs = [(x[i], i) for x in lines for i in range(len(x) - 1) if x[i] == x[i + 1]]
            assert len(pairs) <= 1 and all(ch == "悠" and i in LIMITS.places[len(lines[0])]
                                           for ch, i in pairs), text
            # no character twice in a line but as XX, no two-character sequence twice
            assert not any(map(rep.repeats_in_line, lines)), text
            assert not rep.repeats_pair(lines), text
    assert c.rules[-1].relaxed == 0
    # without limits only 重韵 is blocked: 光 repeats freely inside lines
    c = poem_rules(tok, specs[:1], index)
    text = run(c, tok, torch.arange(1), bias=bias)[0]
    assert text.count("光") > 2 and not rep.repeats_rhyme(v.split_poem(text))


def test_repetition_relaxes_before_rhyme():
    # Two rhyming characters and a cap of 1: the cap gives way, the rhyme holds.
    tok = CharTokenizer(list("天年月，。"))
    lim = Limits({"wujue": 1}, {"wujue": 0}, frozenset(), {5: frozenset()})
    c = poem_rules(tok, [make_spec("wujue")], LineIndex([]), lim)
    lines = v.split_poem(run(c, tok, torch.tensor([0]))[0])
    assert v.rhymes(lines) and len(lines) == 4 and c.rules[-1].relaxed > 0


def test_limits_measured_and_saved(tmp_path):
    poems = [["悠悠天地远", "白日依山尽", "黄河入海流", "更上一层楼"]] * 6 + [
        ["秋风秋雨秋", "床前明月光", "疑是地上霜", "低头思故乡"]]
    lim = Limits.from_poems(poems, rate=0.2, double_rate=0.2, min_poems=5)
    assert lim.cap == {"wujue": 2} and lim.max_doubles == {"wujue": 1}
    assert lim.doubled == {"悠"} and lim.places == {5: {0}}
    p = tmp_path / "repetition.json"
    p.write_text(lim.to_json(), encoding="utf-8")
    assert Limits.load(p) == lim
    r = rep.rates(poems)
    assert r["char_3plus"] == round(1 / 7, 4) and r["doubles_per_poem"] == round(6 / 7, 4)
    assert r["char_twice_in_a_line"] == round(1 / 7, 4) and r["pair_twice"] == 0   # 秋风秋雨秋
    assert rep.repeats_in_line("雨急霏霏雨") and not rep.repeats_in_line("悠悠天地远")
    assert rep.repeats_pair(["春来芳菲春", "柳色芳菲深"]) and not rep.repeats_pair(["悠悠天地远"])
    assert rep.rates([["明月照高楼", "清光照九州", "寒江秋色里", "独上月明楼"]])["repeated_rhyme"] == 1
    assert rep.rhyme_ends(["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]) == list("光霜乡")
    with pytest.raises(FileNotFoundError, match="prepare"):
        Limits.load(tmp_path / "absent.json")


def test_keyword_bias_follows_the_plan_and_never_overrides_a_rule(tok, index):
    """Weighted decoding: a planned word's first character is weighed where a word may start,
    its next one right after it, and nothing once the word is written; a heavy weight writes
    the word into every poem, and the verse rules (acrostic heads, rhyme) still hold."""
    from shared import decoding
    from shared.rules import AllOf
    from poetry.poems.rules import KeywordBias

    spec = make_spec("wujue")
    kb = KeywordBias(tok, [spec], [["明月"]], weight=3.0)
    ming, yue = tok.stoi["明"], tok.stoi["月"]
    kb.begin(torch.tensor([0]))
    assert kb.bias()[1].tolist() == [ming]                 # line start: a word may start
    kb.step(torch.tensor([tok.stoi["春"]]))
    assert kb.bias() is None                               # position 1: no word starts here
    kb.step(torch.tensor([ming]))                          # position 2 takes 明 without a pull
    assert kb.bias()[1].tolist() == [yue] and kb.bias()[2].tolist() == [3.0]
    kb.step(torch.tensor([yue]))
    assert kb.bias() is None                               # 明月 is written

    specs = [make_spec(f, acrostic="春夏秋冬风花雪月"[:v.FORMS[f].lines]) for f in FORMS]
    src, src_len = decoding.pad_batch([[4], [5], [6], [7]])
    for keywords, weight in ((["明月"], 50.0), ([], 0.0)):
        rules = poem_rules(tok, specs, index)
        rules = AllOf(rules.rules + [KeywordBias(tok, specs, [keywords] * 4, weight=weight)])
        cfg = decoding.GenerationConfig(strategy="sample", max_len=80, seed=1)
        out = decoding.generate(RandomModel(tok.vocab_size), src, src_len, cfg, bos_id=tok.bos_id,
                                eos_id=tok.eos_id, constraint=rules)
        texts = [tok.decode(ids) for ids in out.tokens]
        for spec, text in zip(specs, texts):
            assert_valid(text, spec, index)
        assert all("明月" in t for t in texts) == bool(keywords), texts


@pytest.mark.parametrize("book", v.BOOKS)
def test_each_rhyme_book_holds_with_its_tones(tok, index, book):
    """平水韵 with classical tones by default; 新韵 with modern tones when asked."""
    specs = [make_spec(f, rhyme=book, tones="strict", tokenizer=tok) for f in FORMS]
    assert all(s.book == book and s.rhyme for s in specs)
    c = poem_rules(tok, specs, index)
    for seed in range(3):
        for text, spec in zip(run(c, tok, torch.arange(len(specs)), seed=seed), specs):
            lines = v.split_poem(text)
            assert v.check_poem(lines, spec.form, tones="strict", book=book) == [], text


def test_rhyme_takes_a_book_or_a_switch(tok):
    assert make_spec("wujue").book == "pingshui" and make_spec("wujue", rhyme=True).rhyme
    off = make_spec("wujue", rhyme=False)
    assert not off.rhyme and off.book == "pingshui"
    with pytest.raises(ValueError, match="rhyme book 'guangyun'"):
        make_spec("wujue", rhyme="guangyun")
    with pytest.raises(ValueError, match="rhyme must be"):
        make_spec("wujue", rhyme=3)
