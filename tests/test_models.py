"""Every backbone builds for gray and colour images of the sizes the data layer gives, returns one
logit per class, and exposes the `features` / `head` split the methods rely on."""
import pytest
import torch

from semisup.errors import UserError
from semisup.models import MODELS, SIZED, build_model
from semisup.models.gan import build_generator


@pytest.mark.parametrize("name", sorted([*MODELS, *SIZED]))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_backbone_shapes(name, shape):
    torch.manual_seed(0)
    m = build_model(name, shape, 7)
    x = torch.randn(4, *shape)
    m.train()
    out = m(x)
    assert out.shape == (4, 7)
    assert m.features(x).shape == (4, m.feature_dim)
    assert torch.isfinite(out).all()


def test_gan_discriminator_data_dependent_init():
    torch.manual_seed(0)
    d = build_model("mlp_gan", (1, 28, 28), 10)
    assert not d.initialised
    d.train()
    d(torch.randn(256, 1, 28, 28) * 3 + 1)
    assert d.initialised
    d.eval()  # without the noise layers, the first layer's pre-activations are standardised
    first = d.features[2]
    t = first(torch.randn(256, 1, 28, 28).flatten(1) * 3 + 1)
    assert t.mean().abs() < 0.2 and (t.std(0).mean() - 1).abs() < 0.2


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 24, 40)])
def test_generator_makes_images_of_the_data_shape(shape):
    g = build_generator(shape)
    x = g(torch.rand(5, 100))
    assert x.shape == (5, *shape) and x.min() >= 0 and x.max() <= 1


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="--model nope"):
        build_model("nope", (1, 8, 8), 10)
