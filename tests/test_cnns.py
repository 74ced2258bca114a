"`medsyn cnns`: the seeds' CNNs on a finished study; refusals before any training."
from medsyn.cnns import cnn_input, cnns_table, collect_cnns
from medsyn.core import load_settings


def test_cnns_refuses_a_missing_study_and_a_missing_draw(cli, tmp_path):
    p = cli("cnns", "--preset", "cpu", "--runs-dir", tmp_path)
    assert p.returncode == 2 and "no study in" in p.stderr and "medsyn study --preset cpu" in p.stderr
    (tmp_path / "cpu" / "pneumoniamnist" / "l2").mkdir(parents=True)
    p = cli("cnns", "--preset", "cpu", "--runs-dir", tmp_path, "--cnn-archs", "resnet50")
    assert p.returncode == 2 and "has no synthetic.npz" in p.stderr


def test_the_imagenet_cnns_train_at_32_px_in_the_cpu_preset(tmp_path):
    s = load_settings("cpu")
    assert {a: cnn_input(a, s) for a in ("cnn", "resnet18_28", "resnet50", "densenet121", "vgg19_bn")} == \
        {"cnn": None, "resnet18_28": None, "resnet50": 32, "densenet121": 32, "vgg19_bn": 32}
    assert collect_cnns(tmp_path).empty and cnns_table(collect_cnns(tmp_path)).empty
