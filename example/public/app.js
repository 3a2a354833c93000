/* global io, location */
// The example's page. Plain browser JavaScript, no build step. Everything the
// server or other users send is put on the page with textContent, never as
// HTML, so a chat message cannot inject markup or script.
'use strict'

const $ = (id) => document.getElementById(id)

main().catch((error) => {
  $('http-user').textContent = `could not load the page state: ${error.message}`
})

async function main () {
  const me = await (await fetch('/me', { cache: 'no-store' })).json()
  $('node').textContent = me.node
  document.title = `${me.node} · fastify-session-socket-auth example`

  if (me.user) {
    $('http-user').textContent = `logged in as ${me.user.name} (${me.user.role})`
    $('me-name').textContent = me.user.name
    $('me-role').textContent = me.user.role
    $('me-expires').textContent = me.expires ? new Date(me.expires).toLocaleString() : 'never'
    $('messages').textContent = String(me.messages)
    $('app').hidden = false
  } else {
    $('http-user').textContent = 'not logged in (no session cookie)'
    $('login').hidden = false
    $('login-error').hidden = new URLSearchParams(location.search).get('error') !== 'login'
  }

  // The page always tries both namespaces, logged in or not, to show what the
  // server answers. Both share one connection: the session is checked once.
  const socket = io()
  const admin = io('/admin')
  watch(socket, $('status-main'))
  watch(admin, $('status-admin'))

  let ticks = 0
  socket.on('tick', (tick) => {
    ticks++
    $('tick').textContent = time(tick.at)
    $('tick-from').textContent = `tick #${tick.n} from ${tick.node}`
    $('tick-count').textContent = String(ticks)
  })
  socket.on('chat', (message) => {
    append($('chat-log'), message.at, [
      el('b', 'from', message.from),
      el('span', 'role', message.role),
      el('span', 'text', message.text),
      el('span', 'via', `via ${message.node}`)
    ])
  })
  socket.on('announcement', (note) => {
    append($('chat-log'), note.at, [el('b', 'from', `announcement from ${note.from}`), el('span', 'text', note.text)], 'announcement')
  })
  socket.on('messages', (count) => { $('messages').textContent = String(count) })
  // An admin changed this user's role: the server says so to the user's room.
  socket.on('user', (user) => {
    $('me-role').textContent = user.role
    $('http-user').textContent = `logged in as ${user.name} (${user.role})`
  })
  admin.on('connect', () => {
    $('admin').hidden = false
    $('admin-refused').hidden = true
    $('admin-revoked').hidden = true
  })
  admin.on('session:revoked', ({ reason }) => {
    if (reason !== 'forbidden') return
    $('admin').hidden = true
    $('admin-revoked').hidden = false
  })
  admin.on('users', (users) => showUsers(users, me.user))
  admin.on('connect_error', (err) => {
    $('admin-refused').hidden = !(me.user && err.data && err.data.code === 'FORBIDDEN')
  })
  admin.on('activity', (entry) => {
    append($('activity'), entry.at, [el('span', 'text', entry.text)])
  })

  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const input = $('chat-input')
    if (input.value.trim() === '') return
    socket.emit('chat', input.value)
    input.value = ''
  })
  $('announce-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const input = $('announce-input')
    if (input.value.trim() === '') return
    admin.emit('announce', input.value)
    input.value = ''
  })
}

/** The admin's user list, with a button per user to change the role (POST /users/:id/role). */
function showUsers (users, self) {
  const list = $('users')
  list.replaceChildren(...users.map((user) => {
    const item = document.createElement('li')
    item.dataset.user = user.id
    const target = user.role === 'admin' ? 'user' : 'admin'
    const button = el('button', 'role-button', user.role === 'admin' ? 'Demote to user' : 'Make admin')
    button.type = 'button'
    button.dataset.role = target
    button.addEventListener('click', () => setRole(user.id, target, button))
    item.append(el('b', 'from', user.name), el('span', 'role', user.role), el('span', 'muted', user.id === self?.id ? '(you)' : ''), button)
    return item
  }))
}

async function setRole (id, role, button) {
  button.disabled = true
  const response = await fetch(`/users/${encodeURIComponent(id)}/role`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ role })
  })
  const error = $('users-error')
  error.hidden = response.ok
  if (!response.ok) {
    error.textContent = `could not change the role: ${(await response.json().catch(() => ({}))).error ?? response.status}`
    button.disabled = false
  }
}

/**
 * Shows one namespace's state: connected as whom, refused and why (the code
 * from connect_error), disconnected and why (the session:revoked reason).
 */
function watch (socket, line) {
  let revoked = null
  socket.on('welcome', ({ user, node }) => {
    show(line, 'connected', '', `connected as ${user.name} (${user.role}) on ${node}`)
  })
  socket.on('connect', () => {
    revoked = null
    if (line.dataset.state !== 'connected') show(line, 'connected', '', 'connected')
  })
  socket.on('connect_error', (err) => {
    if (err.data && err.data.code) {
      // A refusal by the session guard: err.message === err.data.code. Socket.IO does not retry these.
      show(line, 'refused', err.data.code, `refused: ${err.data.code} · ${err.data.message}`)
    } else {
      show(line, 'unreachable', '', `cannot reach the server (${err.message}); retrying…`)
    }
  })
  socket.on('session:revoked', ({ reason }) => { revoked = reason })
  socket.on('disconnect', (reason) => {
    if (revoked === 'regenerate') {
      show(line, 'reconnecting', revoked, 'session:revoked (regenerate): reconnecting with the new session cookie…')
    } else if (revoked === 'forbidden') {
      // The session lives on; this namespace's rule no longer admits its user.
      show(line, 'disconnected', revoked, `left: session:revoked (forbidden), then "${reason}": the rule of this namespace no longer admits this user`)
    } else if (revoked !== null) {
      show(line, 'disconnected', revoked, `disconnected: session:revoked (${revoked}), then "${reason}". Reload the page to log in again.`)
      if (line.id === 'status-main') endSession(revoked)
    } else if (reason === 'io server disconnect') {
      show(line, 'disconnected', '', `disconnected by the server ("${reason}")`)
    } else {
      show(line, 'reconnecting', '', `connection lost ("${reason}"); reconnecting…`)
    }
  })
}

function endSession (reason) {
  $('http-user').textContent = `session ended (${reason})`
  for (const control of document.querySelectorAll('#chat-form input, #chat-form button, #announce-form input, #announce-form button')) {
    control.disabled = true
  }
}

function show (line, state, code, text) {
  line.dataset.state = state
  line.dataset.code = code
  line.textContent = text
}

function el (tag, className, text) {
  const node = document.createElement(tag)
  node.className = className
  node.textContent = text
  return node
}

function append (list, at, parts, className) {
  const item = document.createElement('li')
  if (className) item.className = className
  item.append(el('time', 'at', time(at)), ...parts)
  list.append(item)
  while (list.children.length > 100) list.firstElementChild.remove()
  list.scrollTop = list.scrollHeight
}

function time (iso) {
  return new Date(iso).toLocaleTimeString()
}
