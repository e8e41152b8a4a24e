import torch

from clmae.models import patchify
from clmae.viz import ROW_LABEL_WIDTH, mask_grid


def _tile(picture, row, col, size=8, scale=1, pad=0, left=0):
    step = size * scale + pad
    x, y = left + pad + col * step, pad + row * step
    box = (x, y, x + size * scale, y + size * scale)
    return torch.frombuffer(bytearray(picture.crop(box).convert("L").tobytes()), dtype=torch.uint8).float()


def test_rows_show_image_hidden_visible_and_reconstruction():
    images = torch.rand(2, 1, 8, 8)
    mask = torch.zeros(2, 4)
    mask[:, 0] = 1  # hide the top-left 4x4 patch
    pred = torch.zeros(2, 4, 16)  # predicts black everywhere
    pic = mask_grid(images, mask, pred, 4, (0.0,), (1.0,), scores=1 - mask, scale=1, pad=0, labels=False)
    assert pic.size == (16, 40)
    original = _tile(pic, 0, 0)
    torch.testing.assert_close(original, (images[0, 0] * 255).round().flatten(), atol=1, rtol=0)
    recon = _tile(pic, 3, 0).reshape(8, 8)
    assert recon[:4, :4].abs().max() == 0  # hidden patch: the (black) prediction
    torch.testing.assert_close(recon[4:, 4:], (images[0, 0, 4:, 4:] * 255).round(), atol=1, rtol=0)
    visible = _tile(pic, 2, 0).reshape(8, 8)
    assert (visible[:4, :4] == 128).all()  # hidden patches drawn grey in the visible-input row
    scores = _tile(pic, 4, 0).reshape(8, 8)
    assert scores[:4, :4].max() == 0 and scores[4:, 4:].min() == 255


def test_perfect_prediction_reconstructs_the_image():
    images = torch.rand(1, 3, 8, 8)
    pic = mask_grid(images, torch.ones(1, 4), patchify(images, 4), 4, (0.0,) * 3, (1.0,) * 3, scale=1, pad=0)
    labels = ROW_LABEL_WIDTH  # the tiles start right of the row labels
    torch.testing.assert_close(_tile(pic, 3, 0, left=labels), _tile(pic, 0, 0, left=labels))


def test_rows_are_labelled():
    images = torch.rand(2, 1, 8, 8)
    plain = mask_grid(images, torch.ones(2, 4), torch.zeros(2, 4, 16), 4, (0.0,), (1.0,), scale=4, labels=False)
    labelled = mask_grid(images, torch.ones(2, 4), torch.zeros(2, 4, 16), 4, (0.0,), (1.0,), scale=4)
    assert labelled.size == (plain.size[0] + ROW_LABEL_WIDTH, plain.size[1])
    margin = labelled.crop((0, 0, ROW_LABEL_WIDTH, labelled.size[1])).convert("L")
    ink = [margin.crop((0, r * 34, ROW_LABEL_WIDTH, (r + 1) * 34)).getextrema()[0] for r in range(4)]
    assert all(v < 128 for v in ink)  # text in the margin of every row (4 rows: no keep-scores given)
    # the tiles themselves are the unlabelled picture's
    assert labelled.crop((ROW_LABEL_WIDTH, 0, *labelled.size)).tobytes() == plain.crop((0, 0, *plain.size)).tobytes()
