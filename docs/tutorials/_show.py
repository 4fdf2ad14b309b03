# Shows a Matplotlib figure in the page (the tutorials' one helper, not part of camscope).
from camscope.render import data_uri, figure_png


def show(figure):
    print(f'<img alt="figure" src="{data_uri(figure_png(figure, dpi=90))}">')
