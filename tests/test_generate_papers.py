"""The generation methods and SGAN against their papers' code: Triple-GAN's classifier loss on
fixed tensors, and each method's learning-rate schedule."""
import pytest
import torch
import torch.nn as nn

from semisup.methods import METHODS
from semisup.methods.base import Batch
from semisup.models.gan import ConvDiscriminator, MLPDiscriminator

K, SHAPE = 4, (1, 8, 8)


class FixedCritic(nn.Module):
    """A tiny pair discriminator with known critics: h = W x, critic(x, y) = (E h)_y."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(64, 6)
        self.e = nn.Linear(6, K)

    def features(self, x):
        return self.w(x.flatten(1))

    def critic_all(self, h):
        return self.e(h)

    def critic(self, h, y):
        return self.critic_all(h).gather(1, y[:, None]).squeeze(1)

    def forward(self, x, y):
        return self.critic(self.features(x), y)


def test_triple_gan_classifier_loss_is_the_authors():
    """-alpha E_u sum_y p_c(y|x) log D(x, y), 0.3 E_u H(p_c), 1e-3 CE(uniform, E_u p_c)
    (zhenxuan00/triple-gan, x2y_yz2x_xy2p_ssl_mnist.py, objective 'integrate')."""
    torch.manual_seed(0)
    m = METHODS["generate"]["triple_gan"](nn.Sequential(nn.Flatten(), nn.Linear(64, K)), K, shape=SHAPE)
    m.discriminator = FixedCritic()
    xl, ul = torch.randn(3, *SHAPE), torch.randn(5, *SHAPE)
    uw = ul + 0.1 * torch.randn_like(ul)  # the classifier's weak views differ from D's images
    out = m.step(Batch({"weak": xl, "none": xl}, torch.tensor([0, 1, 3]), {"weak": uw, "none": ul}, progress=0.0))
    with torch.no_grad():
        p = m.model(uw).softmax(1)
        d = torch.sigmoid(m.discriminator.critic_all(m.discriminator.features(ul)))  # D(x, y) for every y
        adv = -(p * d.log()).sum(1).mean()
        entropy = -(p * p.log()).sum(1).mean()
        balance = -(p.mean(0).log()).mean()  # CE of the uniform distribution to the mean prediction
    assert torch.allclose(out["loss_adv_c"], 0.5 * adv, atol=1e-6)
    assert torch.allclose(out["loss_entropy"], 0.3 * entropy, atol=1e-6)
    assert torch.allclose(out["loss_balance"], 1e-3 * balance, atol=1e-8)
    assert "loss_pseudo" not in out  # R_P starts at 30% of the run
    loss_adv = out["loss_adv_c"]
    loss_adv.backward()
    assert m.discriminator.e.weight.grad is None  # D is held fixed in the classifier's term


def lr(method: str, task: str, k: int, steps: int, model=None) -> float:
    model = model if model is not None else nn.Sequential(nn.Flatten(), nn.Linear(64, K))
    return METHODS[task][method](model, K, shape=SHAPE).lr_factor(k, steps)


@pytest.mark.parametrize("method", ["cgan_pseudo", "cgan_supervised", "ssvae"])
def test_gan_and_vae_rates_are_constant(method):
    """DCGAN (Radford et al. 2016) and Kingma et al. 2014 (adam.py) keep Adam's rate fixed."""
    assert [lr(method, "generate", k, 1000) for k in (0, 500, 999)] == [1.0, 1.0, 1.0]


def test_triple_gan_rate_is_the_authors():
    """Constant for 300 passes over the unlabeled images, then x0.995 per pass
    (x2y_yz2x_xy2p_ssl_mnist.py), the unlabeled batch size taken from the step."""
    m = METHODS["generate"]["triple_gan"](nn.Sequential(nn.Flatten(), nn.Linear(64, K)), K, shape=SHAPE,
                                          num_unlabeled=1000)
    x = torch.randn(2, *SHAPE)
    m.step(Batch({"weak": x, "none": x}, torch.tensor([0, 1]), {"weak": torch.randn(10, *SHAPE),
                                                               "none": torch.randn(10, *SHAPE)}))
    assert m.unlabeled_per_step == 10  # 100 steps a pass
    assert [m.lr_factor(k, 50000) for k in (0, 1000, 30000)] == [1.0, 1.0, 1.0]
    assert m.lr_factor(40000, 50000) == pytest.approx(0.995 ** 100)
    assert m.lr_factor(50000, 50000) == pytest.approx(0.995 ** 200)


def test_sgan_rate_is_the_authors():
    """improved-gan: MNIST lr constant; CIFAR-10 lr * min(3 - epoch / 400, 1) over 1,200 epochs."""
    mlp = MLPDiscriminator(64, K)
    assert [lr("sgan", "classify", k, 900, mlp) for k in (0, 600, 899)] == [1.0, 1.0, 1.0]
    conv = ConvDiscriminator(3, K, width=8)
    assert lr("sgan", "classify", 0, 900, conv) == 1.0
    assert lr("sgan", "classify", 600, 900, conv) == pytest.approx(1.0)
    assert lr("sgan", "classify", 750, 900, conv) == pytest.approx(0.5)
    assert lr("sgan", "classify", 900, 900, conv) == pytest.approx(0.0)
