"""Every backbone builds for gray and colour images of the sizes the data layer gives, returns one
logit per class, exposes the `features` / `head` split the methods rely on, and normalises its
own [0, 1] input with statistics it carries."""
import copy

import pytest
import torch

from semisup.errors import UserError
from semisup.models import MODELS, SEG_MODELS, SIZED, build_model, build_seg_model, load_encoder
from semisup.models.norm import input_norm, set_input_norm
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
    first = d.features[3]  # after InputNorm, Flatten and the input noise
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


@pytest.mark.parametrize("name,seg", [*[(n, False) for n in sorted([*MODELS, *SIZED])],
                                      *[(n, True) for n in sorted(SEG_MODELS)]])
def test_the_network_normalises_its_own_input(name, seg):
    """Every network's first layer is its InputNorm: on [0, 1] pixels with statistics (m, s) it
    computes what the same weights compute on (x - m) / s with no normalisation, in `forward`
    and in the `features` / `encode` entry points the methods call; the statistics are buffers,
    so they travel in the state dict."""
    shape = (3, 32, 32)
    torch.manual_seed(0)
    net = (build_seg_model if seg else build_model)(name, shape, 5).eval()
    plain = copy.deepcopy(net)
    mean, std = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.1, 0.3, 0.2])
    set_input_norm(net, mean, std)
    x = torch.rand(2, *shape)
    xn = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net(x), plain(xn), atol=1e-4, rtol=1e-4)
        if seg:
            assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(net.encode(x), plain.encode(xn)))
        else:
            assert torch.allclose(net.features(x), plain.features(xn), atol=1e-4, rtol=1e-4)
            assert not torch.equal(net(x), plain(x))  # the statistics are used
    state = net.state_dict()
    fresh = (build_seg_model if seg else build_model)(name, shape, 5)
    fresh.load_state_dict(state)
    assert torch.equal(input_norm(fresh).mean.flatten(), mean) and torch.equal(input_norm(fresh).std.flatten(), std)


def test_an_encoder_file_without_input_statistics_keeps_the_datas(tmp_path):
    """`--init` with a state dict that has no InputNorm entries (torchvision's, timm's) loads every
    other tensor and leaves the encoder's own statistics; one that has them brings them."""
    net = build_seg_model("deeplabv3plus", (3, 32, 32), 4)
    set_input_norm(net, [0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    donor = build_seg_model("deeplabv3plus", (3, 32, 32), 4)
    set_input_norm(donor, [0.5] * 3, [0.25] * 3)
    bare = {k: v for k, v in donor.encoder.state_dict().items() if not k.startswith("input.")}
    torch.save(bare, tmp_path / "bare.pt")
    n = load_encoder(net, tmp_path / "bare.pt")
    assert n == len(bare) and torch.allclose(input_norm(net).mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(net.encoder.conv1.weight, donor.encoder.conv1.weight)
    torch.save(donor.state_dict(), tmp_path / "whole.pt")
    load_encoder(net, tmp_path / "whole.pt")
    assert torch.equal(input_norm(net).std.flatten(), torch.full((3,), 0.25))
