"""The command's layer-spec syntax: ``parse_layers`` / ``format_layers`` and the
``layers``/``input_shape`` settings of ``make_config``."""

import pytest

import jaxprop as jp
from jaxprop._experiment import format_layers, make_config, parse_layers
from jaxprop.layers import AvgPool, Conv, Dense, Flatten, MaxPool

CONV_BASE = "conv25k5s2p1,conv25k3s2p1,conv25k3s2p1,flatten,dense10"


@pytest.mark.parametrize(
    "spec",
    [
        CONV_BASE,
        "conv8k3x3same:relu,maxpool2,avgpool2x2s1,flatten,dense10:tanh",
        "conv4k3p1x2,conv4k3p0+1x2,flatten,dense3",
        "conv6k5s2x1,avgpool3s2,flatten,dense16:gelu,dense2",
        "conv6k3p0,maxpool2x2s2x1,flatten,dense1",
        "dense8,dense1",
    ],
)
def test_canonical_specs_round_trip(spec):
    assert format_layers(parse_layers(spec)) == spec


def test_parse_gives_the_layers_and_format_writes_them_back():
    layers = (
        Conv(25, kernel_size=5, stride=2, padding=1),
        Conv(8, kernel_size=(3, 2), stride=(1, 2), padding="SAME", activation="relu"),
        Conv(4, kernel_size=3, padding=((0, 1), (2, 2))),
        MaxPool(2),
        AvgPool((2, 2), stride=1),
        Flatten(),
        Dense(16, activation="tanh"),
        Dense(10),
    )
    spec = format_layers(layers)
    assert spec == (
        "conv25k5s2p1,conv8k3x2s1x2same:relu,conv4k3p0+1x2,maxpool2,"
        "avgpool2x2s1,flatten,dense16:tanh,dense10"
    )
    assert parse_layers(spec) == layers


def test_spec_is_forgiving_of_case_spaces_and_lists():
    expected = (Conv(8, 3, padding="SAME"), Flatten(), Dense(2))
    assert parse_layers(" CONV8K3SAME , Flatten,dense2") == expected
    assert parse_layers(["conv8k3same", "flatten", "dense2"]) == expected
    assert parse_layers("conv8k3valid") == parse_layers("conv8k3") == (Conv(8, 3),)


def test_the_issue_example_error_verbatim():
    with pytest.raises(ValueError) as e:
        parse_layers("conv8k3,conx25,flatten", "--layers")
    assert str(e.value) == (
        "--layers: unknown layer 'conx25' at token 2 (did you mean 'conv'? "
        "expected one of ['conv', 'maxpool', 'avgpool', 'flatten', 'dense']):\n"
        "  conv8k3,conx25,flatten\n"
        "          ^^^^^^"
    )


@pytest.mark.parametrize(
    "spec, message, bad",
    [
        ("conv8k3,conx25,flatten", "unknown layer 'conx25' at token 2", "conx25"),
        ("convk3", "unknown layer 'convk3' at token 1 (did you mean 'conv'?", "convk3"),
        ("conv0k3", "features '0' at token 1 (must be at least 1)", "0"),
        ("conv8k0", "kernel size 'k0' at token 1 (must be at least 1)", "k0"),
        ("conv8k3x0", "kernel size 'k3x0' at token 1 (each must be ≥ 1)", "k3x0"),
        ("conv8k3s0", "stride 's0' at token 1 (must be at least 1)", "s0"),
        ("dense1,maxpool2x0", "window '2x0' at token 2", "2x0"),
        ("conv8", "conv needs a kernel size at token 1 (e.g. conv8k3)", "conv8"),
        ("conv", "conv needs its number of features at token 1", "^"),
        ("dense", "dense needs its number of features at token 1", "^"),
        ("maxpool,dense1", "maxpool needs its window at token 1", "^"),
        ("conv8k3q2", "unknown option 'q2' at token 1 (conv takes k (kernel)", "q2"),
        ("conv8k3-", "unknown option '-' at token 1", "-"),
        ("flatten3", "unknown option '3' at token 1 (flatten takes nothing)", "3"),
        ("conv8kx3", "bad kernel size 'kx3' at token 1 (expected e.g. k3", "kx3"),
        ("conv8k3x", "bad kernel size 'k3x' at token 1", "k3x"),
        ("conv8k3p1+", "bad padding 'p1+' at token 1 (expected e.g. p1, p1x2", "p1+"),
        ("conv8k3k5", "kernel size given twice at token 1", "k5"),
        ("conv8k3p1same", "padding given twice at token 1", "same"),
        ("maxpool2k3", "maxpool takes no kernel size 'k3' at token 1", "k3"),
        ("maxpool2same", "maxpool takes no padding 'same' at token 1", "same"),
        ("dense10k3", "dense takes no kernel size 'k3' at token 1", "k3"),
        ("maxpool2:relu", "maxpool has no activation ':relu' at token 1", ":relu"),
        ("flatten:relu", "flatten has no activation ':relu' at token 1", ":relu"),
        (
            "dense3:rel",
            "unknown activation 'rel' at token 1 (did you mean 'relu'?",
            "rel",
        ),
        ("conv8k3,,dense1", "an empty token at token 2", "^"),
        ("conv8k3,", "an empty token at token 2", "^"),
    ],
)
def test_every_error_quotes_the_spec_with_a_caret_under_the_bad_part(
    spec, message, bad
):
    with pytest.raises(ValueError) as e:
        parse_layers(spec, "--layers")
    head, quoted, caret = str(e.value).split("\n")
    assert head.startswith(f"--layers: {message}"), head
    assert head.endswith(":")
    assert quoted == f"  {spec}"
    start, width = len(caret) - len(caret.lstrip()), len(caret.strip())
    assert set(caret.strip()) == {"^"}
    if bad == "^":  # an empty part: one caret where it is missing
        assert width == 1
    else:
        assert quoted[start : start + width] == bad, (quoted, caret)


def test_spec_that_is_not_text_or_empty():
    with pytest.raises(TypeError, match="layers must be a string of comma-separated"):
        parse_layers(3)
    with pytest.raises(ValueError, match="layers must name at least one layer"):
        parse_layers("  ")


def test_format_refuses_what_the_syntax_cannot_write():
    class Custom:
        def bind(self, in_shape):
            return self

    with pytest.raises(ValueError, match=r"layers\[1\]: Custom has no --layers spec"):
        format_layers((Dense(3), Custom()))
    with pytest.raises(ValueError, match=r"layers\[0\]: activation .* has no"):
        format_layers((Dense(3, activation=jp.ACTIVATIONS["relu"]), Dense(1)))


def test_config_records_the_canonical_spec_and_input_shape():
    config = make_config({"layers": "CONV25k5s2p1, flatten,dense10", "data": "mnist1d"})
    assert config.layers == "conv25k5s2p1,flatten,dense10"
    assert config.sizes is None and config.input_shape is None
    config = make_config(
        {"layers": ["conv8k3", "flatten", "dense1"], "input_shape": [2, 1]}
    )
    assert config.layers == "conv8k3,flatten,dense1" and config.input_shape == (2, 1)
    assert make_config({"layers": "dense1", "input_shape": "28,28,1"}).input_shape == (
        28,
        28,
        1,
    )
    assert make_config(config.as_dict()) == config  # config.json reads back


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"sizes": "2,4,1", "layers": "dense1"},
            "--sizes and --layers: give one (--sizes makes an MLP",
        ),
        ({"input_shape": "2"}, "--input-shape goes with --layers; an MLP"),
        ({"layers": "dense1", "input_shape": "2,0"}, "--input-shape must be"),
        ({"layers": "dense1", "input_shape": ""}, "--input-shape must be one"),
        ({"layers": "dense1,flaten"}, "--layers: unknown layer 'flaten' at token 2"),
    ],
)
def test_config_refuses_layer_settings_that_do_not_fit(values, message):
    names = {k: "--" + k.replace("_", "-") for k in ("sizes", "layers", "input_shape")}
    with pytest.raises(ValueError) as e:
        make_config(values, names=names)
    assert message in str(e.value)
