// Log in, or register (new accounts are STUDENTs).

import type { Api } from './api';
import { errorText } from './board';
import { h } from './dom';
import type { User } from './types';

export function loginView(api: Api, notice: string, loggedIn: (user: User) => void): HTMLElement {
  const login = authForm(
    'login',
    'Log in',
    [
      ['email', 'Email', 'email', 'username'],
      ['password', 'Password', 'password', 'current-password'],
    ],
    (data) => api.login(data.email, data.password),
    loggedIn,
  );
  const register = authForm(
    'register',
    'Register',
    [
      ['displayName', 'Display name', 'text', 'nickname'],
      ['email', 'Email', 'email', 'email'],
      ['password', 'Password (at least 8 characters)', 'password', 'new-password'],
    ],
    (data) => api.register(data.email, data.password, data.displayName),
    loggedIn,
  );
  return h(
    'main',
    { class: 'login', id: 'main' },
    h('h1', {}, "The Marauder's Map"),
    h('p', { class: 'tagline' }, 'I solemnly swear that I am up to no good.'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    h('div', { class: 'login-forms' }, login, register),
  );
}

function authForm(
  id: string,
  title: string,
  fields: [name: string, text: string, type: string, autocomplete: string][],
  send: (data: Record<string, string>) => Promise<User>,
  done: (user: User) => void,
): HTMLElement {
  const error = h('p', { class: 'form-message error', role: 'alert', id: `${id}-error` });
  const form = h(
    'form',
    { id: `${id}-form`, 'aria-labelledby': `${id}-heading` },
    h('h2', { id: `${id}-heading` }, title),
    fields.map(([name, text, type, autocomplete]) =>
      h('label', { for: `${id}-${name}` }, h('span', {}, text), h('input', { id: `${id}-${name}`, name, type, autocomplete, required: true })),
    ),
    h('button', { type: 'submit' }, title),
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button') as HTMLButtonElement;
    button.disabled = true;
    error.textContent = '';
    const data = Object.fromEntries([...new FormData(form)].map(([key, value]) => [key, String(value)]));
    try {
      done(await send(data));
    } catch (failure) {
      error.textContent = `${title} failed: ${errorText(failure)}`;
      button.disabled = false;
    }
  });
  return h('section', { class: 'panel' }, form);
}
