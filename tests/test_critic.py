"""The core's critic (shared/critic.py): it learns, saves and loads exactly, refuses damaged or
mismatched files, and the writers rank by it; the poem side's seasons (poetry/poems/scenes.py)."""
import random
import shutil

import pytest

from poetry.poems import PoemWriter
from poetry.poems.scenes import Seasons
from shared import critic as core

VOCAB = 12


def _texts(n, real, seed):
    """Real texts climb (4 5 6 ...), generated ones are shuffled: a signal a critic must learn."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(3, 7)
        start = rng.randrange(4, VOCAB - k + 1)
        t = list(range(start, start + k))
        if not real:
            rng.shuffle(t)
        out.append(t)
    return out


@pytest.fixture(scope="module")
def trained():
    real = {s: _texts(n, True, i) for i, (s, n) in enumerate(
        (("train", 300), ("validation", 60), ("test", 60)))}
    fake = {s: _texts(n, False, 10 + i) for i, (s, n) in enumerate(
        (("train", 300), ("validation", 60), ("test", 60)))}
    cfg = core.CriticConfig(vocab=VOCAB, emb_dim=16, hidden=32, head=16, dropout=0.0)
    return core.train(cfg, real, fake, epochs=8, batch=32, lr=1e-2, log=lambda m: None)


def test_the_critic_learns_what_tells_real_from_generated(trained):
    critic, figures = trained
    assert figures["accuracy"]["test"] >= 0.9, figures
    assert figures["texts"]["test"] == {"real": 60, "generated": 60}
    assert [h["epoch"] for h in figures["history"]] == list(range(8))
    up, shuffled = critic.score([[5, 6, 7, 8, 9], [8, 5, 9, 6, 7]])
    assert up > 0 > shuffled


def test_scores_do_not_depend_on_the_batch(trained):
    """Rows are encoded in groups of equal length: padding never reaches a score."""
    critic, _ = trained
    texts = _texts(40, True, 99) + _texts(40, False, 98)
    together = critic.score(texts)
    alone = [critic.score([t])[0] for t in texts]
    assert together == pytest.approx(alone, abs=1e-5)


def test_saved_and_loaded_exactly(trained, tmp_path):
    critic, figures = trained
    core.save(critic, tmp_path, {"task": "test", **figures})
    back = core.load(tmp_path, VOCAB)
    texts = _texts(20, False, 7)
    assert back.score(texts) == pytest.approx(critic.score(texts), abs=0.02)   # float16 files
    assert core.load(tmp_path / "nothing") is None


def test_damaged_or_mismatched_critic_files_are_named(trained, tmp_path):
    critic, figures = trained
    core.save(critic, tmp_path, {})
    with pytest.raises(ValueError, match="reads 12 token ids, its model 40"):
        core.load(tmp_path, 40)
    (tmp_path / core.WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=f"the critic in {tmp_path} cannot be loaded"):
        core.load(tmp_path, VOCAB)
    (tmp_path / core.WEIGHTS).unlink()
    with pytest.raises(ValueError, match="cannot be loaded"):
        core.load(tmp_path, VOCAB)


def test_the_writer_ranks_by_its_critic(poem_model_dir, tmp_path, trained):
    """A critic beside the model is loaded with it and changes which candidate wins, by its
    weight; with weight 0 or critic=False the ranking is the model's own."""
    folder = tmp_path / "poem"
    shutil.copytree(poem_model_dir, folder)
    plain = PoemWriter.load(folder)
    assert plain.critic is None
    request = (plain.request("明月", "wujue"), 1, 3)
    base = plain.generate([request], candidates=8)[0][0]["poem"]
    cfg = core.CriticConfig(vocab=plain.model.cfg.tgt_vocab, emb_dim=8, hidden=8, head=4)
    core.save(core.Critic(cfg), folder, {"task": "poem"})
    judged = PoemWriter.load(folder)
    assert isinstance(judged.critic, core.Critic)
    assert judged.critic_weight == PoemWriter.CRITIC_WEIGHT > 0
    first = judged.tok.stoi[base[0]]

    class Against(core.Critic):          # reads like a critic that dislikes the first choice
        def score(self, texts, batch=256):
            return [-1.0 if t and t[0] == first else 0.0 for t in texts]

    judged.critic = Against(cfg)
    judged.critic_weight = 0.0
    assert judged.generate([request], candidates=8)[0][0]["poem"] == base   # weight 0
    judged.critic_weight = 100.0
    chosen = judged.generate([request], candidates=8)[0][0]["poem"]
    assert chosen[0] != base[0]
    assert PoemWriter.load(folder, critic=False).critic is None
    with pytest.raises(ValueError, match="critic must be true or false"):
        PoemWriter.load(folder, critic="no")


def test_seasons_from_titles_and_their_conflicts():
    spring = [{"title": "春日", "lines": ["桃花流水去", "杨柳拂江来"]}] * 20
    autumn = [{"title": "秋夕", "lines": ["落叶满空山", "寒蛩鸣夜雨"]}] * 20
    other = [{"title": "送人", "lines": ["桃花落叶下", "行人去不还"]}] * 5
    seasons = Seasons.build(spring + autumn + other)
    assert seasons.lexicon["桃"] == "春" and seasons.lexicon["叶"] == "秋"
    assert "桃花" not in seasons.lexicon          # its characters carry the season already
    assert seasons.named(["今日春寒重", "落叶满庭红"]) == {"春", "秋"}
    assert seasons.conflicts(["今日春寒重", "落叶满庭红"])
    assert not seasons.conflicts(["残春花落尽", "初夏绿阴浓"])        # neighbours: no conflict
    assert not seasons.conflicts(["桃花流水去", "行人去不还"])          # one item: not named
    assert seasons.rate([["春风吹柳绿", "秋月照人寒"], ["江上一孤舟", "行人去不还"]]) == 0.5


def test_the_writer_turns_away_a_poem_whose_seasons_conflict(poem_model_dir):
    from poetry.poems.writer import SEASON_PENALTY
    writer = PoemWriter.load(poem_model_dir)
    req = writer.request("明月", "wujue")
    calm, mixed = "明月照江水，行人去不还。", "春风吹柳绿，秋月照人寒。"
    writer.seasons = None
    before = {t: writer.rank_score(req, t, -2.0) for t in (calm, mixed)}
    writer.seasons = Seasons({})
    assert writer.rank_score(req, mixed, -2.0) == pytest.approx(before[mixed] - SEASON_PENALTY)
    assert writer.rank_score(req, calm, -2.0) == before[calm]


def test_the_pair_critic_learns_which_reply_follows():
    """A dual encoder (pair=True): a reply that answers its context (the context's tokens, one
    higher) beats the replies of other contexts."""
    rng = random.Random(0)

    def pairs(n):
        out = []
        for _ in range(n):
            ctx = [rng.randrange(4, VOCAB - 1) for _ in range(rng.randint(2, 4))]
            out.append((ctx, [t + 1 for t in ctx]))
        return out

    data = {"train": pairs(600), "validation": pairs(60), "test": pairs(60)}
    cfg = core.CriticConfig(vocab=VOCAB, emb_dim=16, hidden=32, head=8, dropout=0.0, pair=True)
    critic, figures = core.train_pairs(cfg, data, epochs=6, batch=32, lr=1e-2,
                                       log=lambda m: None)
    assert figures["hits_at_1_of_20"]["test"] >= 0.5, figures     # chance: 0.05
    ctx, reply = data["test"][0]
    other = next(r for c, r in data["test"] if r != reply)
    assert critic.match([ctx, ctx], [reply, other])[0] > critic.match([ctx], [other])[0]
    with pytest.raises(ValueError, match="pair=True"):
        core.train_pairs(core.CriticConfig(vocab=VOCAB), data)
