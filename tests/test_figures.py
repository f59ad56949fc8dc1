"""The README's figures show numbers that runs produced: every measured number (two decimals or
more) the README quotes beside a figure, between <!-- figure: DATA.json --> and <!-- /figure -->,
is in the data file the figure is drawn from, as printed; and each figure's SVG is under 100 KiB."""
import json
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, 'tests', 'figures')


def numbers_in(data):
    """The numbers of a JSON value, however deep; for rows of precision and recall, also the gap
    (how much worse than real names the two are, added up), as the README quotes it."""
    if isinstance(data, dict):  # of a curve, its first point and the mean of its last 100
        found = [x for key, value in data.items() if key != 'losses' for x in numbers_in(value)]
        rows = data.get('rows')
        if isinstance(rows, list) and rows and 'precision' in rows[0]:
            real = rows[0]
            found += [row['precision'] - real['precision'] + row['recall'] - real['recall'] for row in rows]
        if isinstance(data.get('losses'), list):
            recent = data['losses'][-100:]
            found += [data['losses'][0], sum(recent) / len(recent)]
        return found
    if isinstance(data, list):
        return [x for value in data for x in numbers_in(value)]
    return [data] if isinstance(data, (int, float)) and not isinstance(data, bool) else []


class TestFigures(unittest.TestCase):
    def test_every_number_beside_a_figure_is_in_its_data(self):
        with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
            readme = f.read()
        blocks = re.findall(r'<!-- figure: (\S+) -->(.*?)<!-- /figure -->', readme, re.S)
        self.assertGreaterEqual(len(blocks), 3)
        for data_file, text in blocks:
            with open(os.path.join(FIGURES, data_file)) as f:
                values = numbers_in(json.load(f))
            quoted = re.findall(r'(?<![\d.,])(\d+\.\d\d+)(?![\d.%])', text)  # measured: 2+ decimals
            self.assertTrue(quoted, data_file)
            for number in quoted:
                digits = len(number.split('.')[1])
                with self.subTest(data=data_file, number=number):
                    self.assertTrue(any(f'{value:.{digits}f}' == number for value in values),
                                    f'{number} is not in {data_file}')
            for image in re.findall(r'\]\((tests/figures/[^)]+\.svg)\)', text):
                size = os.path.getsize(os.path.join(ROOT, image))
                self.assertLess(size, 100 * 1024, image)

    def test_a_wrong_number_would_be_caught(self):
        values = numbers_in({'rows': [{'precision': 2.0258, 'recall': 2.3938}], 'losses': [2.5, 2.7, 2.6]})
        self.assertEqual(sorted(values), [0.0, 2.0258, 2.3938, 2.5, 2.6])
        self.assertFalse(any(f'{value:.3f}' == '2.027' for value in values))


if __name__ == '__main__':
    unittest.main()
