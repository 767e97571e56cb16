"""Model families: each registered model has one, and its codec, loss and outputs line up."""
import mxnet as mx
import numpy as np
import pytest

from fashion_gluon.families import (
    CPN_FAMILY,
    CPN_LEVEL_SIGMA_FACTORS,
    FAMILIES,
    HOURGLASS_FAMILY,
    ModelFamily,
    Output,
    family_of,
)
from fashion_gluon.losses import LossOptions, OutputsLoss
from fashion_gluon.models import get_model, list_models
from fashion_gluon.models.cpn import NUM_LEVELS


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_a_family(name):
    assert family_of(name) in FAMILIES


def test_family_is_taken_from_the_network_class_not_the_name():
    assert family_of("cpn_mobilenetv2_0.5") is CPN_FAMILY
    assert family_of("hourglass_small") is HOURGLASS_FAMILY
    with pytest.raises(ValueError, match="unknown model"):
        family_of("cpn_does_not_exist")


def test_the_declarations():
    assert [(o.sigma_factor, o.loss, o.weight) for o in CPN_FAMILY.outputs] == [
        (2.4, "mse", 0.5), (1.73, "mse", 0.5), (1.37, "mse", 0.5), (1.0, "mse", 0.5), (1.0, "ohkm", 1.0)]
    assert len(CPN_FAMILY.outputs) == NUM_LEVELS + 1 and CPN_FAMILY.repeated is None
    assert CPN_FAMILY.sigma_factors == (2.4, 1.73, 1.37, 1.0, 1.0)
    assert CPN_LEVEL_SIGMA_FACTORS == (2.4, 1.73, 1.37, 1.0) and len(CPN_LEVEL_SIGMA_FACTORS) == NUM_LEVELS
    assert [o.name for o in CPN_FAMILY.outputs] == [f"GlobalNet level {n}" for n in range(1, NUM_LEVELS + 1)] + [
        "RefineNet"]
    assert HOURGLASS_FAMILY.outputs == (Output("last stack", 1.0, "ohkm", 1.0),)
    assert HOURGLASS_FAMILY.repeated == Output("stack", 1.0, "mse", 1.0)
    assert HOURGLASS_FAMILY.sigma_factors == (1.0,)
    with pytest.raises(ValueError, match="repeated outputs share the final output's target"):
        ModelFamily("x", object, (Output("last", 1.0, "mse", 1.0),), repeated=Output("stack", 2.0, "mse", 1.0))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_losses_follow_the_declaration_and_loss_ohkm(family):
    for ohkm in (True, False):
        loss = family.loss(LossOptions(ohkm=ohkm))
        assert type(loss) is OutputsLoss and loss.label == family.name
        assert [o.loss for o in loss.outputs] == ["ohkm" if ohkm and o.loss == "ohkm" else "mse"
                                                  for o in family.outputs]
        assert [o.weight for o in loss.outputs] == [o.weight for o in family.outputs]
        assert (loss.ohkm is not None) == ohkm


@pytest.mark.parametrize("name, kwargs", [("cpn_resnet18", {"channels": 32}), ("hourglass_small", {})])
def test_codec_targets_line_up_with_the_outputs_and_the_loss_accepts_them(name, kwargs):
    family = family_of(name)
    net = get_model(name, 3, **kwargs)
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    outputs = net(x)
    codec = family.codec((64, 64), 4, 2.0)
    targets, weights = codec.encode(np.array([[10.0, 20.0], [30.0, 31.0], [50.0, 12.0]]), np.ones(3))
    assert targets.shape[1:] == outputs[-1].shape[1:]
    if family is CPN_FAMILY:  # one target per output, the GlobalNet ones blurrier, coarse first
        assert len(targets) == len(outputs)
        assert list(codec.sigmas) == sorted(codec.sigmas, reverse=True)
    batch = mx.nd.array(np.stack([targets, targets]))
    value = family.loss()(outputs, batch, mx.nd.array(np.stack([weights, weights])))
    assert np.isfinite(value.asscalar()) and value.asscalar() > 0
    np.testing.assert_array_equal(ModelFamily.final(outputs).asnumpy(), outputs[-1].asnumpy())
