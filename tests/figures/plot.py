"""Draws the README's figures from the data files beside this script, as SVG.

  names_seen.json      the means over seeds 42, 1 and 2 of tests/sampler_table.py:
                       pypy3 tests/sampler_table.py --summarize t42.json t1.json t2.json \\
                           --figure-data tests/figures/names_seen.json
  training_curve.json  the default run's loss at every step and its held-out NELBO

Run: python tests/figures/plot.py  (needs matplotlib, for these figures only: pip install matplotlib)

It writes precision_recall.svg, names_seen.svg and training_curve.svg beside itself, the same
bytes on every run. Each figure has an opaque white background and a thin grey border, so that
it reads the same in GitHub's light and dark themes.
"""
import json
import os

import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))

plt.rcParams.update({
    'svg.fonttype': 'none',  # text as text: small files, crisp at any size
    'svg.hashsalt': 'microdiffusion',  # the same ids, so the same bytes, on every run
    'font.family': 'sans-serif',
    'font.sans-serif': ['DejaVu Sans', 'Helvetica', 'Arial'],
    'font.size': 9,
    'axes.titlesize': 10,
    'axes.labelsize': 9,
    'axes.edgecolor': '#57606a',
    'axes.linewidth': 0.8,
    'axes.spines.top': False,
    'axes.spines.right': False,
    'axes.grid': True,
    'grid.color': '#e5e8eb',
    'grid.linewidth': 0.6,
    'xtick.color': '#24292f',
    'ytick.color': '#24292f',
    'text.color': '#24292f',
    'axes.labelcolor': '#24292f',
    'figure.facecolor': 'white',
    'figure.edgecolor': '#d0d7de',
    'figure.constrained_layout.use': True,
    'figure.constrained_layout.h_pad': 0.08,
    'figure.constrained_layout.w_pad': 0.08,
    'legend.frameon': False,
    'legend.fontsize': 8,
})

# colours that hold apart for colour-blind readers (Okabe and Ito), on a white ground
DEFAULT, RANDOM, NO_NOISE, TWIN, REAL = '#0072b2', '#d55e00', '#009e73', '#4d4d4d', '#000000'
SOFT = '#6e7781'  # labels of lesser points


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return json.load(f)


def save(fig, name):
    fig.patch.set_linewidth(2)  # half of it falls outside the canvas: a 1-pixel border
    fig.savefig(os.path.join(HERE, name), metadata={'Date': None}, edgecolor=fig.get_edgecolor())
    plt.close(fig)
    print(f"{name}: {os.path.getsize(os.path.join(HERE, name)):,} bytes")


def row(rows, sampler, names=None):
    return next(r for r in rows if r['sampler'] == sampler and (names is None or r['names'] == names))


def path(rows, sampler):
    points = sorted((r for r in rows if r['sampler'] == sampler), key=lambda r: r['names'])
    return [r['names'] for r in points], [r['precision'] for r in points], [r['recall'] for r in points]


def precision_recall(data):
    rows, default = data['rows'], data['default_names']
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    label = dict(textcoords='offset points', fontsize=8)

    real = row(rows, None)
    ax.plot(real['precision'], real['recall'], '*', color=REAL, ms=11, zorder=5, label='real names')
    ax.annotate('real names', (real['precision'], real['recall']), xytext=(8, -3), color=REAL, **label)

    # the left-to-right twin, cooled from temperature 1 to 0.5
    twin = [row(rows, 'T 1'), row(rows, 'T 0.5')]
    xs, ys = [r['precision'] for r in twin], [r['recall'] for r in twin]
    ax.plot(xs, ys, 's', mfc='white', mec=TWIN, mew=1.3, ms=6.5, zorder=3,
            label=f"left to right ({twin[0]['names']:,} names seen)")
    ax.plot(xs, ys, '--', color=TWIN, lw=1, zorder=1, label='the temperature, left to right')
    ax.annotate('T 1', (xs[0], ys[0]), xytext=(-7, -11), ha='right', color=TWIN, **label)
    ax.annotate('T 0.5', (xs[1], ys[1]), xytext=(0, 7), ha='center', color=TWIN, **label)

    # more names seen: the default sampler's path and random order's, an arrow towards more names
    for sampler, colour, name, offsets in (
            ('confidence', DEFAULT, 'diffusion, the default sampler, by names seen', {17200: (5, 4), 34400: (0, -12)}),
            ('random', RANDOM, 'diffusion, random order (T 1), by names seen', {34400: (6, -9)})):
        names, xs, ys = path(rows, sampler)
        for i in range(len(xs) - 1):
            ax.annotate('', xy=(xs[i + 1], ys[i + 1]), xytext=(xs[i], ys[i]), zorder=2,
                        arrowprops=dict(arrowstyle='-|>', color=colour, lw=1.1, alpha=0.6, mutation_scale=8,
                                        shrinkA=3, shrinkB=4))
        ax.plot(xs, ys, 'o', color=colour, ms=4.5, zorder=4, label=name)
        for n, x, y in zip(names, xs, ys):
            offset = offsets.get(n, (6, -3))
            ax.annotate(f"{n:,}" + (': the default' if n == default and sampler == 'confidence' else ''), (x, y),
                        xytext=offset, ha='center' if offset[0] == 0 else 'left', color=colour, **label)

    # the sampler at the default training: random order, the default, surest first with no choice noise
    order = [row(rows, s, default) for s in ('random', 'confidence', 'confidence without noise')]
    ax.plot(order[-1]['precision'], order[-1]['recall'], 'D', color=NO_NOISE, ms=5, zorder=4,
            label='diffusion, surest first, no choice noise')
    ax.plot([r['precision'] for r in order], [r['recall'] for r in order], ':', color=SOFT, lw=1.2, zorder=1,
            label=f"the sampler, at {default:,} names seen")

    ax.set_xlabel('precision: nats per character of the names, under a 5-gram model of real names\n'
                  '(lower is better: the names look more real)')
    ax.set_ylabel('recall: nats per character of held-out real names,\nunder a 3-gram model of the names '
                  '(lower is better: more varied)')
    ax.set_title('Precision and recall of 1,000 names: lower left is better')
    ax.legend(loc='lower right')
    ax.set_xlim(1.95, 3.85)
    ax.set_ylim(2.35, 3.05)
    seeds = ', '.join(str(s) for s in data['seeds'])
    fig.text(0.99, 0.005, f"means over seeds {seeds}", ha='right', va='bottom', fontsize=7, color=SOFT)
    save(fig, 'precision_recall.svg')


def names_seen(data):
    rows, default = data['rows'], data['default_names']
    diffusion = sorted({(r['names'], r['nelbo']) for r in rows if r['sampler'] == 'confidence'})
    twin = row(rows, 'T 1')
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs, ys = zip(*diffusion)
    ax.plot(xs, ys, 'o-', color=DEFAULT, ms=5, lw=1.2, label='diffusion: held-out NELBO (a bound)')
    ax.plot(twin['names'], twin['nelbo'], 's', mfc='white', mec=TWIN, mew=1.3, ms=6.5,
            label='left to right: held-out NLL (exact)')
    ax.axhline(twin['nelbo'], color=TWIN, ls='--', lw=0.8, zorder=1)
    for n, y in diffusion:
        ax.annotate(f"{y:.3f}", (n, y), xytext=(5, 4), textcoords='offset points', fontsize=8, color=DEFAULT)
    ax.annotate(f"{twin['nelbo']:.3f}", (twin['names'], twin['nelbo']), xytext=(6, 4), textcoords='offset points',
                fontsize=8, color=TWIN)
    y_default = dict(diffusion)[default]
    ax.plot(default, y_default, 'o', mfc='none', mec=DEFAULT, ms=11, mew=1)
    ax.annotate('the default', (default, y_default), xytext=(-9, -4), textcoords='offset points', ha='right',
                va='top', fontsize=8, color=DEFAULT)
    ax.set_xscale('log')
    ticks = [twin['names']] + list(xs)
    ax.set_xticks(ticks, [f"{n:,}" for n in ticks])
    ax.minorticks_off()
    ax.set_xlim(800, 48000)
    ax.set_xlabel('names seen in training (log scale)')
    ax.set_ylabel('nats per character (lower is better)')
    ax.set_title('Held-out NELBO against names seen')
    ax.legend(loc='upper right')
    seeds = ', '.join(str(s) for s in data['seeds'])
    fig.text(0.99, 0.005, f"means over seeds {seeds}", ha='right', va='bottom', fontsize=7, color=SOFT)
    save(fig, 'names_seen.svg')


def training_curve(data):
    losses, nelbo = data['losses'], data['heldout_nelbo']
    recent = [losses[max(0, i - 99):i + 1] for i in range(len(losses))]  # as the progress line takes it
    running = [sum(r) / len(r) for r in recent]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(range(1, len(losses) + 1), running, color=DEFAULT, lw=1.6,
            label='training loss per hidden letter, mean of the last 100 steps')
    ax.axhline(nelbo, color=TWIN, ls='--', lw=0.9, label='held-out NELBO per character, after training')
    ax.plot(len(losses), nelbo, 'o', color=TWIN, ms=5, clip_on=False, zorder=5)
    ax.annotate(f"{nelbo:.3f}", (len(losses), nelbo), xytext=(-4, -5), textcoords='offset points', ha='right',
                va='top', fontsize=8, color=TWIN)
    ax.annotate(f"{running[-1]:.3f}", (len(losses), running[-1]), xytext=(-4, 5), textcoords='offset points',
                ha='right', va='bottom', fontsize=8, color=DEFAULT)
    ax.set_xlim(0, len(losses))
    ax.set_ylim(min(running + [nelbo]) - 0.1, max(running) + 0.04)
    ax.set_xlabel("training step")
    ax.set_ylabel('nats (lower is better)')
    ax.set_title('The default run: training loss and held-out NELBO')
    ax.legend(loc='upper right')
    save(fig, 'training_curve.svg')


def main():
    precision_recall(load('names_seen.json'))
    names_seen(load('names_seen.json'))
    if os.path.exists(os.path.join(HERE, 'training_curve.json')):
        training_curve(load('training_curve.json'))
    else:
        print('training_curve.json: not there, training_curve.svg left as it is')


if __name__ == '__main__':
    main()
