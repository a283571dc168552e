"""python3-torch twin of faceid-train's training step, for the images/s comparison.

Same network as core/nn/embedding_net.cc (CpuSmall: stem 3->32 s2, one basic block per stage
32/64/128/256, PReLU, GAP, Linear 256->128, BatchNorm1d), linear head, centre loss in an
nn.Embedding with its own SGD group, the same augmentation (flip, shift/scale, brightness/
contrast) and network input (64 px, RGB, [-1, 1]), fed by torch.utils.data.DataLoader workers.
Input: the raw crops written by `trainer_bench export-crops`.
Run with /usr/bin/python3 (Debian's python3-torch). Prints one line: images/s.
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.PReLU(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + (self.shortcut(x) if self.shortcut is not None else x))


class EmbeddingNet(nn.Module):
    def __init__(self, dim=128, widths=(32, 64, 128, 256)):
        super().__init__()
        layers = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                  nn.PReLU(widths[0])]
        cin = widths[0]
        for i, w in enumerate(widths):
            layers.append(Block(cin, w, 2 if i > 0 else 1))
            cin = w
        self.body = nn.Sequential(*layers)
        self.embedding = nn.Linear(widths[-1], dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
        return self.bn(self.embedding(x))


class Crops(torch.utils.data.Dataset):
    def __init__(self, path, size, input_size):
        self.labels = np.loadtxt(path + ".labels", dtype=np.int64).reshape(-1)
        self.crops = np.fromfile(path, dtype=np.uint8).reshape(len(self.labels), size, size, 3)
        self.input_size = input_size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i * 7919 + int(time.time_ns() % 1000003))
        u = lambda: float(torch.rand(1, generator=g)) * 2 - 1
        img = torch.from_numpy(self.crops[i]).permute(2, 0, 1).float().unsqueeze(0)
        scale = 1 + 0.08 * u()
        dx, dy = 0.06 * 2 * u(), 0.06 * 2 * u()  # normalised coordinates span 2
        flip = -1.0 if float(torch.rand(1, generator=g)) < 0.5 else 1.0
        theta = torch.tensor([[[flip / scale, 0, -dx], [0, 1 / scale, -dy]]], dtype=torch.float32)
        grid = F.affine_grid(theta, img.shape, align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection",
                            align_corners=False)
        contrast, brightness = 1 + 0.15 * u(), 0.15 * 255 * u()
        img = ((img - img.mean()) * contrast + img.mean() + brightness).clamp(0, 255)
        img = F.interpolate(img, size=(self.input_size, self.input_size), mode="area")[0]
        img = img.flip(0) / 255.0  # BGR -> RGB
        return (img - 0.5) / 0.5, int(self.labels[i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", required=True)
    ap.add_argument("--crop-size", type=int, default=112)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    data = Crops(a.crops, a.crop_size, a.image_size)
    classes = int(data.labels.max()) + 1
    loader = torch.utils.data.DataLoader(
        data, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=a.workers,
        persistent_workers=a.workers > 0,
        worker_init_fn=lambda _: torch.set_num_threads(1))
    net, head, centers = EmbeddingNet(), nn.Linear(128, classes), nn.Embedding(classes, 128)
    nn.init.normal_(centers.weight, 0, 0.01)
    opt = torch.optim.SGD([
        {"params": list(net.parameters()) + list(head.parameters()), "lr": 0.1,
         "momentum": 0.9, "weight_decay": 5e-4},
        {"params": centers.parameters(), "lr": 0.5}], lr=0.1)
    done, images, start = 0, 0, time.time()
    while done < a.steps:
        for x, y in loader:
            feats = net(x)
            ce = F.cross_entropy(head(feats), y)
            center = 0.5 * (feats - centers(y)).pow(2).sum(1).mean()
            loss = ce + 0.01 * center
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            images += x.shape[0]
            if done >= a.steps:
                break
    elapsed = time.time() - start
    print(f"python3-torch: {done} steps, {images / elapsed:.1f} images/s")


if __name__ == "__main__":
    main()
