import torch

from clmae.models import patchify
from clmae.viz import ROW_LABEL_WIDTH, SCALE_WIDTH, TITLE_HEIGHT, mask_grid

ORANGE = (255, 115, 0)  # (1, 0.45, 0) x 255, rounded
VIRIDIS_0, VIRIDIS_HALF, VIRIDIS_1 = (68, 1, 84), (33, 145, 140), (253, 231, 37)  # matplotlib's viridis x 255


def _rgb_tile(picture, row, col, size=8, top=0, left=0):
    """Tile (row, col) of an unpadded scale-1 picture as [size, size, 3] integers."""
    box = (left + col * size, top + row * size, left + (col + 1) * size, top + (row + 1) * size)
    return torch.frombuffer(bytearray(picture.crop(box).tobytes()), dtype=torch.uint8).long().reshape(size, size, 3)


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
    visible = _rgb_tile(pic, 2, 0)
    assert (visible[:4, :4] == torch.tensor(ORANGE)).all()  # hidden patches solid orange in the visible-input row
    scores = _rgb_tile(pic, 4, 0)
    assert (scores[:4, :4] == torch.tensor(VIRIDIS_0)).all() and (scores[4:, 4:] == torch.tensor(VIRIDIS_1)).all()


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


def test_hidden_patches_stand_apart_from_black_and_from_image_pixels():
    images = torch.rand(1, 1, 8, 8)
    images[0, 0, :4, :4] = 0  # a black hidden patch: on black, darkening alone would be invisible
    mask = torch.tensor([[1.0, 0, 0, 1]])  # top-left and bottom-right hidden
    pic = mask_grid(images, mask, torch.zeros(1, 4, 16), 4, (0.0,), (1.0,), scale=1, pad=0, labels=False)
    image, hidden = _rgb_tile(pic, 0, 0), _rgb_tile(pic, 1, 0)
    grey = (images[0, 0] * 255).round().long()
    # hidden row: 60 % orange over 40 % of the image, computed by hand
    expect = torch.stack([0.6 * 255 + 0.4 * grey, 0.6 * 114.75 + 0.4 * grey, 0.4 * grey.float()], -1).round().long()
    for rows, cols in ((slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8))):
        assert (hidden[rows, cols] - expect[rows, cols]).abs().max() <= 1
        assert (hidden[rows, cols, 0] - hidden[rows, cols, 2] >= 150).all()  # red minus blue: never grey or black
    assert (hidden[:4, :4].sum(-1) >= 200).all()  # the black patch is clearly not black once hidden
    # visible patches unchanged, and every image pixel is grey (R == G == B): the orange is no image colour
    assert torch.equal(hidden[:4, 4:], image[:4, 4:]) and torch.equal(hidden[4:, :4], image[4:, :4])
    assert (image[..., 0] == image[..., 2]).all() and torch.equal(image[..., 0], grey)


def test_keep_scores_use_the_colour_scale_and_the_scale_is_drawn():
    images = torch.rand(1, 1, 8, 8)
    scores = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    args = (images, torch.zeros(1, 4), torch.zeros(1, 4, 16), 4, (0.0,), (1.0,))
    plain = mask_grid(*args, scores=scores, scale=1, pad=0, labels=False)
    tile = _rgb_tile(plain, 4, 0)
    assert (tile[0, 0] == torch.tensor(VIRIDIS_0)).all()
    assert ((tile[0, 4] - torch.tensor(VIRIDIS_HALF)).abs() <= 1).all()
    assert (tile[4, 0] == torch.tensor(VIRIDIS_1)).all()
    # 0.25 is the second anchor of the scale: (0.231, 0.322, 0.545) x 255
    assert ((tile[4, 4] - torch.tensor((59, 82, 139))).abs() <= 1).all()

    labelled = mask_grid(*args, scores=scores, scale=8, pad=2)
    assert labelled.size == (ROW_LABEL_WIDTH + 66 + 2 + SCALE_WIDTH, 5 * 66 + 2)
    x0, bar_top = ROW_LABEL_WIDTH + 66 + 2 + 6, 2 + 4 * 66  # the bar beside the keep-score row, 1 at the top
    column = [labelled.getpixel((x0 + 5, y)) for y in range(bar_top + 1, bar_top + 63)]
    assert max(abs(a - b) for a, b in zip(column[0], VIRIDIS_1)) <= 12
    assert max(abs(a - b) for a, b in zip(column[-1], VIRIDIS_0)) <= 12
    text = labelled.crop((x0 + 14, bar_top, labelled.size[0], bar_top + 64)).convert("L")
    assert text.getextrema()[0] < 128  # its labels


def test_title_is_drawn_above_the_rows():
    images = torch.rand(2, 1, 8, 8)
    args = (images, torch.ones(2, 4), torch.zeros(2, 4, 16), 4, (0.0,), (1.0,))
    plain = mask_grid(*args, scale=4)
    titled = mask_grid(*args, scale=4, title="75% hidden")
    assert titled.size == (plain.size[0], plain.size[1] + TITLE_HEIGHT)
    assert titled.crop((0, 0, titled.size[0], TITLE_HEIGHT)).convert("L").getextrema()[0] < 128
    assert titled.crop((0, TITLE_HEIGHT, *titled.size)).tobytes() == plain.tobytes()
