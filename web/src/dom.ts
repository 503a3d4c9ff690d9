// A tiny element builder, so the page needs no UI framework:
// h('button', { type: 'button', onclick: go }, 'Go').

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** A labelled <select> over `values`, with an optional "any" first option. */
export function select(
  id: string,
  text: string,
  values: readonly string[],
  show: (value: string) => string,
  options: { any?: string; value?: string; name?: string } = {},
): HTMLLabelElement {
  const control = h(
    'select',
    { id, name: options.name ?? id },
    options.any !== undefined ? h('option', { value: '' }, options.any) : null,
    values.map((value) => h('option', { value, selected: value === options.value }, show(value))),
  );
  return h('label', { for: id }, h('span', {}, text), control);
}

export function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}
