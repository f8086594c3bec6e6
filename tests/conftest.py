import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers import export_tiny  # noqa: E402  (after the path is set)
# One intra-op thread per test process: two cores, and oversubscribed OpenMP threads
# spin-wait each other to a crawl when a background job shares the machine.
torch.set_num_threads(1)
# The generation-precision choice (shared/fp16.py) of this test run, for its subprocesses too:
# not the user's ~/.cache/shiyu
os.environ["SHIYU_CACHE"] = tempfile.mkdtemp(prefix="shiyu-test-cache-")
atexit.register(shutil.rmtree, os.environ["SHIYU_CACHE"], ignore_errors=True)


@pytest.fixture(params=["lstm", "gru"])
def cell(request):
    return request.param


@pytest.fixture(scope="session")
def poem_model_dir(tmp_path_factory):
    """A tiny untrained poem model exported like the real one (tests/helpers.export_tiny)."""
    from poetry.poems.format import SPECIALS
    from poetry.poems.train import default_model_config
    from shared.tokenizers import CharTokenizer
    chars = (ROOT / "tests" / "fixtures" / "poems" / "chars.txt").read_text(encoding="utf-8")
    extra = "春夏秋冬白日依山尽黄河入海流明月思江送别，。"
    tok = CharTokenizer.train([chars.replace("\n", "") + extra], specials=SPECIALS)
    extra = tmp_path_factory.mktemp("poem_extras")  # shipped beside the model, in its card
    from poetry.poems.novelty import LineIndex
    LineIndex(["白日依山尽", "黄河入海流"]).save(extra / "lines.npz.xz")
    from poetry.poems.repetition import Limits
    (extra / "repetition.json").write_text(Limits.from_poems(
        [["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]]).to_json(), encoding="utf-8")
    (extra / "themes.json").write_text('{"月": "明光夜", "春": "花草"}', encoding="utf-8")
    from poetry.poems.planning import Planner
    (extra / "keywords.json").write_text(Planner.from_poems(PLAN_POEMS, 1, 1, 1, 1).to_json(),
                                         encoding="utf-8")
    return export_tiny(tmp_path_factory.mktemp("poem_model"), tok, default_model_config,
                       {"rebuild": "tests/conftest.py"},
                       extra_files={p.name: p for p in extra.iterdir()})


PLAN_POEMS = [{"title": "明月", "lines": ["明月照江水", "春风送别离"]},
              {"title": "春江", "lines": ["春江白日尽", "黄河入海流"]},
              {"title": "送别", "lines": ["送别江山远", "明月思故乡"]}]


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory):
    """A tiny untrained chat model exported like the real one (SentencePiece pieces, <sep>):
    enough to test the bot's API, CLI, batch and app behaviour; quality is measured by
    `python -m chatbot.evaluate`."""
    import random
    from chatbot.format import SEP
    from chatbot.train import default_model_config
    from shared.tokenizers import SentencePieceTokenizer
    rng = random.Random(0)
    words = ("hi hello how are you doing today good fine thanks what about weekend movie "
             "music food like really nice cool yes no maybe 你好 谢谢 朋友").split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + rng.choice("?.!")
             for _ in range(400)]
    tok = SentencePieceTokenizer.train(texts, vocab_size=80, specials=[SEP],
                                       character_coverage=1.0)
    return export_tiny(tmp_path_factory.mktemp("chat_model"), tok, default_model_config,
                       {"rebuild": "tests/conftest.py"})


CHAT_PAIRS = [("what is your name?", "I am a tiny test bot."),
              ("do you like music?", "yes, jazz mostly."),
              ("你好", "你好！"), ("how are you?", "fine, thanks.")]


@pytest.fixture(scope="session")
def chat_rerank_dir(tmp_path_factory, chat_model_dir):
    """The tiny chat model with what the shipped one has beside it: a backward model
    (`chat-backward` next to `chat`) and a retrieval index of a few (message, reply) pairs."""
    from chatbot.retrieval import Retrieval
    from chatbot.train import default_model_config
    from shared.checkpoint import load_model
    _, tok, _ = load_model(chat_model_dir)
    root = tmp_path_factory.mktemp("chat_rerank")
    Retrieval.build(CHAT_PAIRS, tok).save(root / "retrieval.npz")
    d = export_tiny(root / "chat", tok, default_model_config, {"rebuild": "tests/conftest.py"},
                    extra_files={"retrieval.npz": root / "retrieval.npz"})
    export_tiny(root / "chat-backward", tok, default_model_config,
                {"rebuild": "tests/conftest.py"}, seed=1)
    return d


@pytest.fixture(scope="session")
def tune_model_dir(tmp_path_factory):
    """A tiny untrained tune model exported like the real one."""
    from poetry.tunes import abc
    from poetry.tunes.rules import save_windows, window_hashes
    from poetry.tunes.train import default_model_config
    from shared.tokenizers import RegexTokenizer
    from poetry.tunes.format import SETTING_TOKENS
    from tests.helpers import export_tiny
    from tests.helpers import RHYTHMS, TUNE_TOKENS
    tok = RegexTokenizer(abc.TOKEN_PATTERN, TUNE_TOKENS, SETTING_TOKENS)
    extra = tmp_path_factory.mktemp("tune_extras")
    save_windows(extra / "train_windows.npy", window_hashes("|:c6|d6|e6|f6|g6:|", 4))
    return export_tiny(tmp_path_factory.mktemp("tune_model"), tok, default_model_config,
                       {"rebuild": "tests/conftest.py", "rhythms_by_meter": RHYTHMS},
                       extra_files={"train_windows.npy": extra / "train_windows.npy"})
