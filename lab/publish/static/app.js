// pooler-lab's published page: the search box. Paste an error message; the page finds the failures whose symptom
// reads the same once statement names and numbers are set aside (lab/publish/model.py normalize, the same rules),
// and shows each one's cause, fixes with their price, and the cells that show both. Every text is put into the page
// with textContent, never as markup: it comes from rows, and a target's error text is written by its server.
(function () {
  'use strict'
  var data = window.LAB
  var input = document.getElementById('query')
  var answers = document.getElementById('answers')
  if (!data || !input || !answers) return

  function normalize(text) {
    return String(text)
      .toLowerCase()
      .replace(/"[^"]*"/g, '"?"')
      .replace(/\b(?:0x)?[0-9a-f]*\d[0-9a-f]*\b/g, 'n')
      .replace(/\s+/g, ' ')
      .trim()
  }

  function words(text) {
    return normalize(text).split(/[^a-z?"]+/).filter(function (w) { return w.length > 2 })
  }

  function score(query, failure) {
    var q = normalize(query)
    if (!q) return 0
    if (failure.pattern.indexOf(q) >= 0 || q.indexOf(failure.pattern) >= 0) return 1
    if (failure.sqlstates.some(function (s) { return q.indexOf(s.toLowerCase()) >= 0 })) return 0.9
    var mine = words(query)
    var theirs = words(failure.symptom + ' ' + failure.title)
    if (!mine.length) return 0
    var common = mine.filter(function (w) { return theirs.indexOf(w) >= 0 }).length
    return common / mine.length
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag)
    if (text !== undefined && text !== null) node.textContent = text
    if (cls) node.className = cls
    return node
  }

  function link(anchor, text) {
    var a = el('a', text)
    a.href = '#' + anchor
    return a
  }

  function render(query) {
    answers.textContent = ''
    if (!normalize(query)) return
    var found = data.failures
      .map(function (f) { return [score(query, f), f] })
      .filter(function (pair) { return pair[0] >= 0.6 })
      .sort(function (a, b) { return b[0] - a[0] })
      .slice(0, 4)
    if (!found.length) {
      answers.appendChild(el('p', 'No failure of these runs prints that. Try the error text without your own names.'))
      return
    }
    found.forEach(function (pair) {
      var f = pair[1]
      var box = el('article', null, 'answer')
      box.appendChild(el('h3', f.title))
      box.appendChild(el('pre', f.symptom, 'symptom'))
      box.appendChild(el('p', 'Why: ' + f.cause))
      var list = el('ul')
      f.fixes.forEach(function (fix) {
        var item = el('li')
        item.appendChild(el('code', fix.fixed))
        item.appendChild(document.createTextNode(': change '))
        item.appendChild(el('code', fix.setting))
        item.appendChild(document.createTextNode((fix.extra ? ' ' + fix.extra : '') + ' (as ' + fix.by + '). '))
        item.appendChild(el('span', 'Price: ' + (fix.price || 'not measured in these rows') + '.', 'price'))
        if (fix.snippet) item.appendChild(el('pre', fix.snippet, 'snippet'))
        fix.cells.slice(0, 3).forEach(function (a) { item.appendChild(link(a, ' evidence ')) })
        list.appendChild(item)
      })
      if (!f.fixes.length) list.appendChild(el('li', 'No configuration in these rows fixes it.'))
      box.appendChild(list)
      f.alternatives.forEach(function (alt) { box.appendChild(el('p', 'Or, without changing the client: ' + alt + '.')) })
      var cells = el('p', 'Cells: ')
      f.cells.slice(0, 8).forEach(function (a) { cells.appendChild(link(a, a)); cells.appendChild(document.createTextNode(' ')) })
      box.appendChild(cells)
      answers.appendChild(box)
    })
  }

  input.addEventListener('input', function () { render(input.value) })
  if (location.hash.indexOf('#q=') === 0) {
    input.value = decodeURIComponent(location.hash.slice(3))
    render(input.value)
  }
})()
