"""Theme classifier and theme associations on hand-made poems."""
import pytest

from poetry.poems.themes import THEMES, Associations, ThemeClassifier, labels

POEMS = ([{"title": "秋夜", "body": "秋风吹落叶，寒露湿梧桐。"}] * 3
         + [{"title": "送友人", "body": "长亭送别酒，杨柳折离人。"}] * 3
         + [{"title": "春日", "body": "春花开满树，燕子绕新泥。"}] * 3)


def test_labels_and_classifier():
    assert len(THEMES) == 30
    assert labels("秋夜送别") == ["秋", "夜", "送别"] and labels("无题") == []
    clf = ThemeClassifier(POEMS)
    assert clf.rank("秋风落叶梧桐寒")[0] in {"秋", "夜"}
    assert clf.rank("送别离人酒")[0] == "送别"
    assert clf.hit_rate([("春花燕子", ["春"]), ("春花燕子", ["边塞"])], k=1) == 0.5


def test_associations(tmp_path):
    assoc = Associations.from_poems(POEMS * 10, top=3, min_titles=5, min_pair=5)
    assert set(assoc.table["秋"]) <= set("秋风吹落叶寒露湿梧桐") and len(assoc.table["秋"]) == 3
    assert "春" not in assoc.table["秋"]
    assert assoc.relevance("秋", "秋" * 5) == 1.0 and assoc.relevance("秋", "") == 0.0
    assert assoc.relevance("秋", "春花开满树，") == 0.0
    p = tmp_path / "themes.json"
    p.write_text(assoc.to_json(), encoding="utf-8")
    assert Associations.load(p).table == assoc.table
    with pytest.raises(FileNotFoundError, match="prepare"):
        Associations.load(tmp_path / "absent.json")
